"""Realistic memories for benchmarks, examples and tests: deterministic, unique, any size.

Records come in the shape `engram import` reads (one JSON object per line): diary-like
episodic memories, facts, procedures and notes, with tags, metadata, confidence, type
and an RFC 3339 `created_at`. Record i is a pure function of (i, seed) and its text
carries its own date and time (61 s apart), so every record's content is distinct:
deterministic ids never collapse two records into one.

    python -m engram_cli.benchsuite.datagen 200000 > memories.jsonl
    python -m engram_cli.benchsuite.datagen 3000 --csv > memories.csv

It lives in the package (not only under benchmarks/) so that an installed `engram bench`
writes the same sentences as the benchmark scripts.
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import sys
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

BASE_TIME = datetime(2023, 1, 2, 7, 0, tzinfo=timezone.utc)
STEP_S = 61

PEOPLE = """Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory Niaj Olivia Peggy
Rupert Sybil Trent Victor Walter Yasmin Zoe Aaron Beatrice Caleb Delia Elias Fatima Gideon
Hana Isaac Jonas Keiko Liam Maya Nadia Omar Priya Quentin Rosa Samir Tara Uma Viktor Wen
Xavier Yusuf Zara Amara Bruno Chiara Dmitri Elena Felix Greta Hugo Ingrid Jamal Kofi Lena
Marco Nora Oscar Paula Rafael Sofia Tomas Ulla Vera Wanda Yara""".split()

PLACES = """kitchen office garage garden library cafeteria lobby basement attic balcony
warehouse laboratory studio workshop classroom clinic pharmacy bakery market station
airport harbour museum gallery stadium park beach forest lake river bridge tunnel
rooftop courtyard cellar greenhouse hangar pier campsite farmhouse cabin lighthouse
observatory theatre cinema gym pool hospital bank bookshop""".split()

OBJECTS = """espresso-machine printer laptop bicycle umbrella notebook camera kettle router
projector microwave dishwasher thermostat telescope violin piano guitar keyboard monitor
headphones backpack passport wallet keys charger drone scooter lantern compass map tent
stove blender toaster fridge freezer heater fan ladder drill hammer saw paintbrush easel
microscope stethoscope whiteboard calendar clock watch radio speaker tablet phone""".split()

ACTIVITIES = """fixed repaired cleaned borrowed returned painted assembled dismantled tested
calibrated replaced upgraded lost found moved packed unpacked labelled inspected measured
photographed sketched sold bought lent""".split()

PROBLEMS = [
    "started leaking water", "made a grinding noise", "overheated", "refused to start",
    "flickered constantly", "lost its settings", "smelled of smoke", "jammed twice",
    "rattled loudly", "drained the battery overnight", "showed an error code",
    "froze during updates", "stopped charging", "cracked in the cold",
    "tripped the breaker", "went out of calibration",
]

CAUSES = [
    "the seal had worn out", "a fuse had blown", "the filter was clogged with limescale",
    "the firmware was two years old", "someone had spilled coffee on it",
    "the power supply was failing", "a cable had come loose", "the bearings were dry",
    "it had been left in the sun", "the battery was swollen", "dust had blocked the vents",
    "the wrong adapter was used", "a spring had snapped", "the sensor was dirty",
]

FEELINGS = """relieved annoyed delighted curious tired proud worried amused surprised calm
grateful frustrated hopeful nervous""".split()

TOPICS = """maintenance travel cooking music science health finance gardening reading
family work sport weather history art language chess astronomy photography sailing
birdwatching climbing pottery""".split()

FOODS = """green-tea black-coffee oat-milk sourdough ramen paella dumplings curry falafel
risotto tacos pho sushi lasagne pancakes porridge hummus kimchi goulash""".split()

FACT_TEMPLATES = [
    "{p} prefers {f} over {f2} and always orders it at the {pl}.",
    "{p} is allergic to {f} and carries medicine when visiting the {pl}.",
    "The {o} in the {pl} belongs to {p} and should not be moved without asking.",
    "{p} speaks three languages and teaches {t} on weekends at the {pl}.",
    "{p} keeps the spare key to the {pl} in a blue box next to the {o}.",
    "The {pl} closes early on Fridays, so {p} collects the {o} on Thursdays.",
    "{p} and {p2} share an interest in {t} and meet at the {pl} every month.",
]

PROCEDURE_TEMPLATES = [
    "To reset the {o}, hold the power button for ten seconds, then unplug it for a "
    "minute; {p} wrote this down after it {pr}.",
    "To descale the {o}, run a cycle of vinegar and water, then two cycles of clean "
    "water; the {pl} copy of the manual says so.",
    "To book the {pl} for {t} sessions, email {p} at least three days ahead and mention "
    "whether you need the {o}.",
    "To calibrate the {o}, let it warm up for five minutes, then follow the steps "
    "taped to the wall of the {pl}.",
]

EPISODE_TEMPLATES = [
    "{d} {p} {a} the {o} in the {pl} after it {pr}; it turned out {c}.",
    "{d} the {o} in the {pl} {pr} because {c}, so {p} called {p2} for help.",
    "{d} {p} and {p2} shared {f} in the {pl} and talked about {t} until late.",
    "{d} {p} felt {fe} after a long walk from the {pl} to the {pl2} in the rain.",
    "{d} {p} {a} a {o} at the {pl} for {p2}, who needed it for a {t} project.",
    "{d} {p} lost the {o} somewhere between the {pl} and the {pl2}; {p2} found it later.",
    "{d} {p} gave a talk about {t} at the {pl} and felt {fe} when {p2} asked questions.",
    "{d} a storm knocked out power at the {pl}; {p} used the {o} as a light until dawn.",
]

WORKING_TEMPLATES = [
    "Reminder: {p} needs the {o} back from the {pl} before the {t} meeting.",
    "Todo: order a new part for the {o} in the {pl}; {p} says it {pr}.",
    "Note to self: ask {p} whether the {pl} is free for {t} next week.",
]

_TYPE_TABLE = (
    ("episodic", EPISODE_TEMPLATES, 60),
    ("semantic", FACT_TEMPLATES, 22),
    ("procedural", PROCEDURE_TEMPLATES, 10),
    ("working", WORKING_TEMPLATES, 8),
)
_TYPE_WEIGHTS = [w for _, _, w in _TYPE_TABLE]


def _words(token: str) -> str:
    return token.replace("-", " ")


def record(i: int, seed: int = 0) -> dict[str, Any]:
    """Record number i: the same (i, seed) always gives the same record."""
    rng = random.Random(seed * 1_000_003 + i)
    when = BASE_TIME + timedelta(seconds=i * STEP_S)
    mtype, templates, _ = rng.choices(_TYPE_TABLE, weights=_TYPE_WEIGHTS)[0]
    template = rng.choice(templates)
    p, p2 = rng.sample(PEOPLE, 2)
    pl, pl2 = rng.sample(PLACES, 2)
    o = rng.choice(OBJECTS)
    f, f2 = rng.sample(FOODS, 2)
    t = rng.choice(TOPICS)
    text = template.format(
        d=f"On {when:%A %d %B %Y} at {when:%H:%M},", p=p, p2=p2, pl=pl, pl2=pl2, o=_words(o),
        a=rng.choice(ACTIVITIES), pr=rng.choice(PROBLEMS), c=rng.choice(CAUSES),
        f=_words(f), f2=_words(f2), t=t, fe=rng.choice(FEELINGS))
    if mtype != "episodic":
        # Facts and procedures carry no date in their wording; a source line keeps every
        # record's content distinct all the same.
        text += f" (noted {when:%Y-%m-%d %H:%M})"
    return {
        "content": text,
        "tags": sorted({t, pl, mtype}),
        "metadata": {"person": p, "location": pl, "source": "journal"},
        "confidence": round(rng.uniform(0.55, 1.0), 3),
        "memory_type": mtype,
        "created_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def generate_records(n: int, seed: int = 0, start: int = 0) -> Iterator[dict[str, Any]]:
    for i in range(start, start + n):
        yield record(i, seed)


def write_jsonl(path: Path | str, n: int, seed: int = 0) -> Path:
    import orjson

    path = Path(path)
    with open(path, "wb") as f:
        for rec in generate_records(n, seed):
            f.write(orjson.dumps(rec))
            f.write(b"\n")
    return path


def _write_csv(f: io.TextIOBase | Any, records: Iterator[dict[str, Any]]) -> None:
    w = csv.writer(f)
    w.writerow(["content", "tags", "confidence", "memory_type", "created_at",
                "metadata.person", "metadata.location", "metadata.source"])
    for r in records:
        m = r["metadata"]
        w.writerow([r["content"], ";".join(r["tags"]), r["confidence"], r["memory_type"],
                    r["created_at"], m["person"], m["location"], m["source"]])


def cue_texts(k: int, seed: int = 0, n: int = 100_000) -> list[str]:
    """k cues that hit records among the first n: a few distinctive words of one record."""
    rng = random.Random(seed + 7)
    cues = []
    for _ in range(k):
        r = record(rng.randrange(n), seed)
        m = r["metadata"]
        words = [m["person"], m["location"]]
        content_words = [w.strip(".,;:()") for w in r["content"].split()]
        candidates = [w for w in content_words if len(w) > 5 and w.lower() == w]
        words += rng.sample(candidates, min(2, len(candidates)))
        cues.append(" ".join(words))
    return cues


def association_pairs(ids: Sequence[str], per_memory: int = 2, seed: int = 0
                      ) -> Iterator[tuple[str, str, float]]:
    """(source, target, strength) edges: each memory links to `per_memory` others, mostly
    near it in time (memories made close together associate), some at random."""
    rng = random.Random(seed + 13)
    n = len(ids)
    for i, src in enumerate(ids):
        for _ in range(per_memory):
            j = (i + rng.randint(1, 50)) % n if rng.random() < 0.8 else rng.randrange(n)
            if j != i:
                yield src, ids[j], round(rng.uniform(0.3, 0.95), 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print realistic memories (JSONL or CSV).")
    parser.add_argument("n", type=int, help="how many records")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--csv", action="store_true", help="CSV instead of JSONL")
    args = parser.parse_args(argv)
    if args.csv:
        _write_csv(sys.stdout, generate_records(args.n, args.seed))
    else:
        import orjson

        out = sys.stdout.buffer
        for rec in generate_records(args.n, args.seed):
            out.write(orjson.dumps(rec) + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
