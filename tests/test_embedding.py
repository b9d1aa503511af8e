"""The embedding models: the default WordLlama model for real, offline, and the registry."""

from __future__ import annotations

import ctypes
import json
import random
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from engram_cli.engine import embedding
from engram_cli.engine.embedding import DEFAULT_MODEL, MAX_TOKENS, load_model, model_info
from engram_cli.errors import SettingsError


@pytest.fixture(scope="module")
def model() -> embedding.EmbeddingModel:
    m = load_model(DEFAULT_MODEL)
    assert m is not None
    return m


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again once the with block ends


_OFFLINE_SCRIPT = r"""
import json, logging, sys, time
attempts = []
def hook(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "urllib.Request"):
        attempts.append(f"{event} {args!r}")
sys.addaudithook(hook)
handlers_before = list(logging.getLogger().handlers)
t = time.perf_counter()
from engram_cli.engine.embedding import DEFAULT_MODEL, load_model
m = load_model(DEFAULT_MODEL)
vecs = m.embed(["the cottage in the Swiss mountains", "a chalet near Zermatt"])
print(json.dumps({"seconds": time.perf_counter() - t, "name": m.name, "dim": m.dim,
                  "shape": list(vecs.shape), "attempts": attempts,
                  "root_handlers_changed": logging.getLogger().handlers != handlers_before}))
"""


def test_default_model_loads_with_the_network_unreachable(tmp_path):
    proxy = f"http://127.0.0.1:{_closed_port()}"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),  # no cached model in ~/.cache
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HTTP_PROXY": proxy,
           "HTTPS_PROXY": proxy, "ALL_PROXY": proxy, "http_proxy": proxy,
           "https_proxy": proxy, "all_proxy": proxy, "NO_PROXY": ""}
    proc = subprocess.run([sys.executable, "-c", _OFFLINE_SCRIPT], capture_output=True,
                          text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["attempts"] == [], "the model tried the network"
    assert (out["name"], out["dim"], out["shape"]) == (DEFAULT_MODEL, 256, [2, 256])
    assert not out["root_handlers_changed"], "loading the model took over the root logger"
    assert not (tmp_path / ".cache").exists(), "the model wrote a cache in the home dir"


def test_importing_the_module_loads_no_numpy_or_model():
    code = ("import sys; import engram_cli.engine.embedding as e; "
            "print(e.model_names(), 'numpy' in sys.modules, 'wordllama' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("]")[1].split() == ["False", "False"], proc.stdout


def test_embed_answers_unit_float32_rows_that_mean_something(model):
    texts = ["the cottage in the Swiss mountains", "a wooden chalet high in the Alps",
             "replication lag on the primary database", ""]
    vecs = model.embed(texts)
    assert vecs.shape == (4, 256) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs[:3], axis=1), 1.0, atol=1e-5)
    assert not vecs[3].any(), "an empty text has nothing to embed: a row of zeros"
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.1
    assert model.embed([]).shape == (0, 256)
    # Order in, order out, whatever the length sorting inside does; and deterministic.
    again = model.embed(texts[::-1])
    assert np.array_equal(again[::-1], vecs)


@pytest.fixture(scope="module")
def wordllama() -> object:
    """WordLlama as its package loads it: its own embed is the reference (ours runs its
    tokenizer differently, engine/embedding.py)."""
    return embedding._load_wordllama("l2_supercat", 256)


def test_embed_matches_wordllama_own_embed(model, wordllama):
    texts = [f"memory number {i} about {'lorem ipsum ' * (i % 17)}" for i in range(300)]
    assert np.allclose(model.embed(texts), wordllama.embed(texts, norm=True), atol=1e-6)


def test_embed_tokenizes_as_wordllama_does_whatever_the_spacing_and_script(model,
                                                                           wordllama):
    # The model normalizes text itself and pads batches itself (engine/embedding.py):
    # spaces and the metaspace character are where that could differ from the tokenizer's
    # own pipeline, so the texts are built of them, random but repeatable.
    rng = random.Random(7)
    pieces = [" ", "  ", "\t", "\n", "\u2581", "a", "Zermatt", "chalet", "\u00e9t\u00e9",
              "\u65e5\u672c\u8a9e", "\U0001f642", "-", ".", "0", "_"]
    texts = [" lead", "trail ", "in  between", "\u2581", " ", "x" * 300]
    texts += ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 40)))
              for _ in range(500)]
    mine = model.embed(texts)
    theirs = wordllama.embed(texts, norm=True)
    assert mine.shape == theirs.shape == (len(texts), 256)
    assert np.allclose(mine, theirs, atol=1e-6)


def test_a_huge_text_is_capped_not_a_memory_blowup(model):
    huge = "alpine hut " * 200_000
    head = " ".join(["alpine hut"] * (MAX_TOKENS // 2))
    t = time.perf_counter()
    vecs = model.embed([huge, "short one"])
    assert time.perf_counter() - t < 5
    assert vecs.shape == (2, 256)
    assert float(vecs[0] @ model.embed([head])[0]) > 0.999


def test_none_means_no_model_and_unknown_names_say_the_choices():
    assert load_model("none") is None
    assert model_info(DEFAULT_MODEL).dim == 256  # type: ignore[union-attr]
    with pytest.raises(SettingsError) as err:
        load_model("all-mpnet-base-v2")
    assert "embedding_model" in str(err.value) and DEFAULT_MODEL in err.value.hint


def test_the_model_is_loaded_once_per_process(model):
    assert load_model(DEFAULT_MODEL) is model


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _malloc_in_use() -> int:
    """Bytes glibc's malloc has handed out and not had back (the Rust tokenizer's too)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    return int(libc.mallinfo2().uordblks)


def test_embedding_distinct_texts_holds_no_native_memory(model):
    # The tokenizer's word cache kept every text under 256 characters (~8 KB each, up to
    # ~160 MB): a server embedding a stream of distinct memories never got it back.
    rng = random.Random(7)
    words = "harbour ledger kettle studio garden weather orbit comet violin".split()

    def texts(n: int) -> list[str]:
        return [" ".join(f"{rng.choice(words)}{rng.randrange(1000)}" for _ in range(15))
                for _ in range(n)]

    model.embed(texts(500))  # scratch buffers and lazy set-up, once
    before = _malloc_in_use()
    for _ in range(6):
        model.embed(texts(500))
    grown = _malloc_in_use() - before
    # With the cache: ~+20 MB for these 3,000 texts (~150 characters each).
    assert grown < 6 * 1024 * 1024, f"embedding 3,000 texts kept {grown / 2**20:.1f} MB"
