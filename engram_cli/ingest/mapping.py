"""Record (a dict from any reader) -> an engram.v1 Memory, serialized, with its id.

Three steps, in this order: the user's field names are renamed to ours (`--map`,
`--id-field`, `--content-field`); CSV/TSV text values become typed values (`tags` as
`a;b` or a JSON list, `embedding` as a JSON list, `metadata.KEY` columns); then the
record is validated and built: each field's type here, its value by the server's own
rules (engram_cli/engine/rules.py), so a record the server would refuse is rejected before
it is sent, with the same reason. Every failure is a `RecordError` whose message names the
field. The id is always set: the record's id field, else the content id the server would
compute (`engram.model.content_id`), so a retry or a re-run never stores a second copy,
even on servers that would assign random ids.
"""

from __future__ import annotations

import difflib
import math
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from engram_cli.contract import STATE_KEY
from engram_cli.engine.confidence import category_of
from engram_cli.engine.model import DEFAULT_CONFIDENCE, content_id
from engram_cli.engine.rules import (
    created_at_error,
    memory_error,
    memory_type_error,
    memory_type_number,
    split_seconds,
)
from engram_cli.errors import EngramError, UsageError

FIELDS = ("id", "content", "confidence", "embedding", "tags", "metadata", "memory_type",
          "created_at", "decay_rate", "state", "associations")
# `state` and `associations` are what `engram export` writes beyond engram.v1's Memory
# (engram_cli/client/export.py): the state goes in the reserved metadata key, the
# associations are handed to the importer (Encoder.associations) to apply at the end.
STATES = ("recent", "consolidating", "consolidated", "reconsolidating")
REJECT_KEY = "_reject"  # the rejects file's annotation; ignored when a record is read back


class RecordError(EngramError):
    """One record cannot become a memory (the reason names the field)."""


@dataclass(frozen=True)
class FieldMap:
    """Where each of our fields comes from in the user's records: (ours, theirs) pairs.
    Theirs may be a dotted path into nested objects (`user.name`); ours may be
    `metadata.KEY`."""

    pairs: tuple[tuple[str, str], ...] = ()

    @classmethod
    def build(cls, maps: Sequence[str] = (), id_field: str | None = None,
              content_field: str | None = None) -> FieldMap:
        """From `--map DEST=SRC` flags and the two shorthands; raises UsageError."""
        pairs: dict[str, str] = {}
        for spec in maps:
            dest, sep, src = spec.partition("=")
            dest, src = dest.strip(), src.strip()
            if not sep or not dest or not src:
                raise UsageError(f"--map {spec!r} is not DEST=SRC",
                                 "e.g. --map content=text --map metadata.author=user.name")
            if dest not in FIELDS and not (dest.startswith("metadata.") and len(dest) > 9):
                close = difflib.get_close_matches(dest, FIELDS, n=1)
                raise UsageError(f"--map {spec!r}: {dest!r} is not a memory field",
                                 f"did you mean {close[0]!r}?" if close else
                                 "use one of " + ", ".join(FIELDS) + " or metadata.KEY")
            pairs[dest] = src
        if id_field:
            pairs["id"] = id_field
        if content_field:
            pairs["content"] = content_field
        return cls(tuple(pairs.items()))

    def source_of(self, dest: str) -> str:
        for d, s in self.pairs:
            if d == dest:
                return s
        return dest

    def apply(self, record: dict[str, Any]) -> dict[str, Any]:
        if not self.pairs:
            return record
        out = dict(record)
        for dest, src in self.pairs:
            found, value = _lookup(record, src)
            if not found:
                out.pop(dest, None)
                continue
            if dest.startswith("metadata."):
                meta = out.get("metadata")
                meta = dict(meta) if isinstance(meta, dict) else {}
                meta[dest[9:]] = value
                out["metadata"] = meta
            else:
                out[dest] = value
        return out


def _lookup(record: dict[str, Any], path: str) -> tuple[bool, Any]:
    if path in record:
        return True, record[path]
    node: Any = record
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def parse_time(value: Any) -> float:
    """RFC 3339 text or epoch seconds -> epoch seconds."""
    if type(value) is str:
        try:
            dt = datetime.fromisoformat(value)  # the common case first: it is the cheapest
        except ValueError:
            pass
        else:
            if dt.tzinfo is not None:
                return dt.timestamp()
    if isinstance(value, bool):
        raise RecordError(f"created_at {value!r} is not a time")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise RecordError(f"created_at {value!r} is not a time")
        error = created_at_error(value)
        if error:
            raise RecordError(error)
        return float(value)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)  # the common case first: it is the cheapest
        except ValueError:
            text = value.strip()
            try:
                return parse_time(float(text))
            except ValueError:
                pass
            try:
                # Python 3.10 does not take "Z" for UTC.
                dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                raise RecordError(f"created_at {value!r} is not RFC 3339 or epoch seconds"
                                  ) from None
        if dt.tzinfo is None:
            raise RecordError(f"created_at {value!r} has no time zone (add Z or +HH:MM)")
        return dt.timestamp()
    raise RecordError(f"created_at {value!r} is not a time")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {str: "text", bool: "a boolean", int: "a number", float: "a number",
            list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


def from_text_columns(record: dict[str, Any]) -> dict[str, Any]:
    """CSV/TSV values are all text: empty means absent, numbers, lists and objects are
    parsed, `metadata.KEY` columns fill the metadata object."""
    out: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    for key, value in record.items():
        if not isinstance(value, str):
            out[key] = value  # already typed (a rejects line read back, a --map target)
            continue
        if value == "":
            continue
        if key.startswith("metadata."):
            meta[key[9:]] = value
        elif key in ("confidence", "decay_rate"):
            try:
                out[key] = float(value)
            except ValueError:
                raise RecordError(f"{key} {value!r} is not a number") from None
        elif key == "tags":
            text = value.strip()
            if text.startswith("["):
                out[key] = _json_column(key, text)
            else:
                out[key] = [t.strip() for t in text.split(";") if t.strip()]
        elif key in ("embedding", "associations") or (
                key == "metadata" and value.lstrip().startswith("{")):
            out[key] = _json_column(key, value)
        else:
            out[key] = value
    if meta:
        base = out.get("metadata")
        out["metadata"] = {**base, **meta} if isinstance(base, dict) else meta
    return out


def _json_column(key: str, text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise RecordError(f"{key} {text[:60]!r} is not valid JSON") from None


class Encoder:
    """Turns records into serialized engram.v1 Memory messages, one at a time."""

    def __init__(self, fieldmap: FieldMap = FieldMap()) -> None:
        from engram_cli.rpc import pb

        self.fieldmap = fieldmap
        self._memory = pb.Memory
        # The last record's associations, checked: (target, strength, type, reason) each.
        self.associations: list[tuple[str, float, int, str]] = []
        self._namer = self._name  # made once: the rules take it for every record

    def encode(self, record: dict[str, Any], text_columns: bool = False) -> tuple[str, bytes]:
        """(memory id, serialized Memory) for one record; raises RecordError."""
        m = self.memory(record, text_columns)
        return m.id, m.SerializeToString()

    def encode_text(self, record: dict[str, Any], text_columns: bool = False
                    ) -> tuple[str, bytes, str | None]:
        """(memory id, serialized Memory, the text to embed for it: its content when it has
        some and no embedding, else None); raises RecordError."""
        m = self.memory(record, text_columns)
        return (m.id, m.SerializeToString(),
                m.content if m.content and not m.embedding else None)

    def encode_payload(self, record: dict[str, Any], text_columns: bool = False
                       ) -> tuple[str, bytes, str | None]:
        """(memory id, serialized Memory, None): `encode_text` for an import that does not
        embed."""
        mid, payload = self.encode(record, text_columns)
        return mid, payload, None

    def memory(self, record: dict[str, Any], text_columns: bool = False) -> Any:
        """The engram.v1 Memory for one record; raises RecordError."""
        annotation = record.get(REJECT_KEY)
        if annotation is not None:
            # A line of a rejects file read back: the annotation is not data, but it says
            # whether the fields are CSV text.
            record = {k: v for k, v in record.items() if k != REJECT_KEY}
            if isinstance(annotation, dict) and annotation.get("format") in ("csv", "tsv"):
                text_columns = True
            if not record:
                raise RecordError("an unfixed line of a rejects file: replace it with the "
                                  "corrected record from its _reject.raw")
        record = self.fieldmap.apply(record)
        if text_columns:
            record = from_text_columns(record)
        get = record.get
        fields: dict[str, Any] = {}

        content = get("content")
        if content is None:
            content = ""
        elif type(content) is not str:
            raise RecordError(f"{self._name('content')} must be text, not {_kind(content)}")
        fields["content"] = content

        emb = get("embedding")
        emb_bytes = b""
        if emb is not None:
            if type(emb) is not list or not set(map(type, emb)) <= {int, float}:
                raise RecordError(f"{self._name('embedding')} must be a list of numbers")
            values = array("d", emb)
            fields["embedding"] = values
            if not content:
                emb_bytes = array("f", values).tobytes()

        mid = get("id")
        if mid is None or mid == "":
            mid = content_id(content, emb_bytes)
        elif type(mid) is int:
            mid = str(mid)
        elif type(mid) is not str:
            raise RecordError(f"{self._name('id')} must be text or an integer, not "
                              f"{_kind(mid)}")
        fields["id"] = mid

        conf = get("confidence")
        if conf is not None and type(conf) not in (int, float):
            raise RecordError(f"{self._name('confidence')} must be a number, not "
                              f"{_kind(conf)}")

        tags = get("tags")
        if tags is not None:
            if type(tags) is not list or not all(type(t) is str for t in tags):
                raise RecordError(f"{self._name('tags')} must be a list of strings")
            fields["tags"] = tags

        meta = get("metadata")
        if meta is not None and type(meta) is not dict:
            raise RecordError(f"{self._name('metadata')} must be an object, not {_kind(meta)}")

        mtype = get("memory_type")
        if mtype is not None and mtype != "":
            number = memory_type_number(mtype)
            if number is None:
                raise RecordError(memory_type_error(mtype, self._name("memory_type")))
            fields["memory_type"] = number

        created = get("created_at")
        seconds = nanos = 0
        if created is not None and created != "":
            if type(created) is int:
                seconds = created
            else:
                seconds, nanos = split_seconds(parse_time(created))

        decay = get("decay_rate")
        if decay is not None:
            if type(decay) not in (int, float):
                raise RecordError(f"{self._name('decay_rate')} must be a number >= 0, not "
                                  f"{decay!r}")
            fields["decay_rate"] = decay

        state = get("state")
        if state is not None and state != "" and state not in STATES:
            raise RecordError(f"{self._name('state')} {state!r} is not one of "
                              + "|".join(STATES))
        edges = get("associations")
        self.associations = _associations(edges, self._name) if edges else []

        error = memory_error(content, b"" if emb is None else emb,
                             DEFAULT_CONFIDENCE if conf is None else conf,
                             decay or 0.0, fields.get("memory_type", 0), self._namer)
        if error:
            if not content and emb is None and "content" not in record:
                error += _text_field_hint(record)
            raise RecordError(error)
        # Sub-messages and the map are filled in place: building them apart and handing them
        # to the constructor costs about twice as much (a map goes through the generic
        # MutableMapping.update), and this runs once per imported record.
        try:
            m = self._memory(**fields)
            if conf is not None:
                c = m.confidence
                c.value = conf
                c.category = category_of(conf)
            if seconds or nanos:
                ts = m.created_at
                ts.seconds = seconds
                ts.nanos = nanos
            if meta:
                md = m.metadata
                for k, v in meta.items():
                    md[k] = v if type(v) is str else orjson.dumps(v).decode()
            if state:
                m.metadata[STATE_KEY] = state
        except (ValueError, TypeError, OverflowError) as exc:
            raise RecordError(f"cannot encode the record: {exc}") from None
        return m

    def _name(self, field: str) -> str:
        src = self.fieldmap.source_of(field)
        return field if src == field else f"{field} (from field {src!r})"


# Where other tools keep a record's text (LangChain's page_content, Chroma's documents...).
_TEXT_FIELDS = ("text", "body", "document", "page_content", "message", "note", "description",
                "summary", "sentence", "passage")


def _text_field_hint(record: dict[str, Any]) -> str:
    """For a record without content: which of its fields holds text, as a hint."""
    texts = [k for k, v in record.items()
             if type(v) is str and v.strip() and k not in FIELDS]
    if not texts:
        return ""
    best = next((k for k in _TEXT_FIELDS if k in texts), texts[0])
    return f"; its text may be in {best!r}: --content-field {best}"


def _associations(edges: Any, name: Any) -> list[tuple[str, float, int, str]]:
    """An exported record's `associations`: [{"target", "strength", "type"?, "reason"?}]."""
    field = name("associations")
    if type(edges) is not list:
        raise RecordError(f"{field} must be a list of objects")
    out = []
    for e in edges:
        if type(e) is not dict or type(e.get("target")) is not str or not e["target"]:
            raise RecordError(f"{field}: each must be an object with a target id")
        strength, kind, reason = e.get("strength", 0.5), e.get("type", 0), e.get("reason", "")
        if type(strength) not in (int, float) or not 0 <= strength <= 1:
            raise RecordError(f"{field}: strength {strength!r} is not a number in 0..1")
        if type(kind) is not int or type(reason) is not str:
            raise RecordError(f"{field}: type must be a number and reason text")
        out.append((e["target"], float(strength), kind, reason))
    return out
