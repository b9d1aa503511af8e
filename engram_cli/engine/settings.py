"""The server's settings: one typed, validated object, with documented defaults and ranges.

`SPECS` is the single source of truth: the engine reads `Settings`, the config file and
the settings RPC speak keys and JSON values, and `engram tune` shows `description`.
Resolution on the server: default < config file (`<data dir>/engram.toml`, section
[engine]) < live changes (settings RPC; persisted back to the config file).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from engram_cli.engine.spec import SettingSpec
from engram_cli.errors import SettingsError

# typing costs a cached recall several ms at import; annotations are strings here.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any



SPECS: tuple[SettingSpec, ...] = (
    SettingSpec("max_hops", int, 3, "spreading activation: hops followed from the seeds",
                0, 10),
    SettingSpec("threshold", float, 0.1,
                "spreading activation: activation below this stops spreading and is not "
                "returned", 0.0, 1.0),
    SettingSpec("decay", float, 0.85, "spreading activation: fraction of activation kept "
                "per hop (times the edge strength)", 0.0, 1.0),
    SettingSpec("hot_capacity", int, 100_000, "memory rows (content, metadata, own "
                "embedding) kept in the RAM hot tier for recall's reads, and what recall "
                "looked up of twice as many other memories (about 330 bytes each); the "
                "vector index is apart: held in RAM whole (int8; stats vector_index.bytes)",
                0, 50_000_000),
    SettingSpec("hot_max_bytes", int, 256 * 1024 * 1024, "bytes of memory rows and looked-up "
                "values the hot tier may hold (whichever of this and hot_capacity is "
                "reached first evicts)",
                0, 1024 ** 4),
    SettingSpec("warm_path", str, "", "directory of the on-disk warm tier: the SQLite store "
                "and the vector index (vectors/) (empty: the data dir); put it on a fast "
                "disk", restart_required=True),
    SettingSpec("recall_budget_ms", int, 50, "time budget of one recall; when it runs out "
                "the best results found so far are returned", 1, 60_000),
    SettingSpec("queue_capacity", int, 1024, "write requests that may wait for the writer; "
                "past it writes get RESOURCE_EXHAUSTED with retry-after-ms", 1, 1_000_000),
    SettingSpec("max_batch", int, 20_000, "largest number of memories one batch call may "
                "carry", 1, 1_000_000),
    SettingSpec("durability", str, "fsync", "fsync: every commit is fsynced before the ack "
                "(survives power loss); group: commits reach the OS before the ack and are "
                "fsynced in groups (survives kill -9, not power loss)",
                choices=("fsync", "group")),
    SettingSpec("group_fsync_ms", int, 1000, "durability group: milliseconds between "
                "fsyncs (WAL checkpoints); the most a power loss can take", 10, 60_000),
    SettingSpec("consolidation_interval_s", float, 60.0, "seconds between background "
                "consolidation passes (0: off)", 0.0, 86_400.0),
    SettingSpec("consolidation_min_age_s", float, 300.0, "a memory must be this old before "
                "a pass consolidates it", 0.0, 365 * 86_400.0),
    SettingSpec("forgetting_exponent", float, 0.1, "forgetting curve: power-law exponent "
                "(a memory's own decay_rate overrides it when > 0)", 0.0, 10.0),
    SettingSpec("forgetting_floor", float, 0.2, "forgetting curve: fraction of the original "
                "confidence that never decays", 0.0, 1.0),
    SettingSpec("forgetting_scale_s", float, 86_400.0, "forgetting curve: time unit in "
                "seconds", 1.0, 365 * 86_400.0),
    SettingSpec("max_message_bytes", int, 64 * 1024 * 1024, "largest gRPC message the "
                "server accepts", 1024 * 1024, 1024 * 1024 * 1024, restart_required=True),
    SettingSpec("embedding_model", str, "wordllama-l2-supercat-256", "model the server "
                "embeds text-only memories and text cues with (none: lexical recall only)",
                choices=("wordllama-l2-supercat-256", "none"), restart_required=True),
    SettingSpec("embedding_workers", int, 0, "processes the server's embedder runs its "
                "model in (0: one per usable core, up to 4); each holds the model (~150 MB). "
                "More catch up sooner after an import; fewer leave more CPU to recalls "
                "meanwhile", 0, 64, restart_required=True),
    SettingSpec("vector_candidates", int, 256, "vector index: a fast scan's best candidates "
                "re-scored per search (of a space past 20,000 vectors): higher finds more of "
                "the true nearest, slower", 10, 65_536),
    SettingSpec("max_store_bytes", int, 0, "largest the database may grow (0: no cap); "
                "past it writes get RESOURCE_EXHAUSTED with retry-after-ms, as on a full "
                "disk, until it is raised or space is freed", 0, 2 ** 62),
    SettingSpec("max_streams", int, 16, "streaming calls served at once (each holds a "
                "thread); past it a new stream gets RESOURCE_EXHAUSTED with retry-after-ms, "
                "and unary calls keep threads of their own", 1, 4096, restart_required=True),
    SettingSpec("readers", int, 6, "SQLite read connections that recalls and other reads "
                "share (a read that finds none free waits for one); each holds at most 4 "
                "MiB of page cache and 16 prepared statements (about 2 MiB), so the "
                "default 6 hold about 36 MiB, however many threads serve calls",
                1, 256, restart_required=True),
    SettingSpec("stream_idle_timeout_s", float, 300.0, "a stream that sends no request for "
                "this long is cancelled (0: never)", 0.0, 86_400.0),
    SettingSpec("connection_idle_timeout_s", float, 600.0, "a client connection with no "
                "call for this long is closed (the client reconnects when it needs to; 0: "
                "never)", 0.0, 86_400.0, restart_required=True),
)

SPEC_BY_KEY: dict[str, SettingSpec] = {s.key: s for s in SPECS}


@dataclass(frozen=True)
class Settings:
    max_hops: int = 3
    threshold: float = 0.1
    decay: float = 0.85
    hot_capacity: int = 100_000
    hot_max_bytes: int = 256 * 1024 * 1024
    warm_path: str = ""
    recall_budget_ms: int = 50
    queue_capacity: int = 1024
    max_batch: int = 20_000
    durability: str = "fsync"
    group_fsync_ms: int = 1000
    consolidation_interval_s: float = 60.0
    consolidation_min_age_s: float = 300.0
    forgetting_exponent: float = 0.1
    forgetting_floor: float = 0.2
    forgetting_scale_s: float = 86_400.0
    max_message_bytes: int = 64 * 1024 * 1024
    embedding_model: str = "wordllama-l2-supercat-256"
    embedding_workers: int = 0
    vector_candidates: int = 256
    max_store_bytes: int = 0
    max_streams: int = 16
    readers: int = 6
    stream_idle_timeout_s: float = 300.0
    connection_idle_timeout_s: float = 600.0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, values: Mapping[str, Any]) -> Settings:
        """A copy with `values` validated and applied, all or nothing."""
        return dataclasses.replace(self, **validate(values))


DEFAULT_SETTINGS = Settings()


# Settings an earlier version had, and what to set instead.
_CANDIDATES = ("the vector index scans every code of a space now: set 'vector_candidates' "
               "(its best re-scored per search) instead")
RETIRED = {"vector_ef": _CANDIDATES, "vector_nprobe": _CANDIDATES}


def unknown_key_error(key: str) -> SettingsError:
    import difflib

    close = difflib.get_close_matches(key, SPEC_BY_KEY, n=1)
    hint = (RETIRED.get(key) or (f"did you mean {close[0]!r}?" if close else None)
            or "see `engram tune --show` for the keys")
    return SettingsError(f"unknown setting {key!r}", hint)


def validate(values: Mapping[str, Any]) -> dict[str, Any]:
    """Check every key and value; raise on the first bad one, naming it."""
    out = {}
    for key, value in values.items():
        spec = SPEC_BY_KEY.get(key)
        if spec is None:
            raise unknown_key_error(key)
        out[key] = spec.coerce(value)
    return out


def _check_defaults() -> None:
    fields = {f.name: f.default for f in dataclasses.fields(Settings)}
    specs = {s.key: s.default for s in SPECS}
    assert fields == specs, "Settings and SPECS disagree"


_check_defaults()
