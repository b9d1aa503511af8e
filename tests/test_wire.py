"""Our engram.v1 descriptors match the wire contract table, field for field; stubs are current."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor

from engram_cli.rpc import ext, pb, pb_memory

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = Path(__file__).parent / "data" / "engram-v1.md"
SHARED = ROOT.parent / "shared" / "wire" / "engram-v1.md"

SCALARS = {
    "float": FieldDescriptor.TYPE_FLOAT,
    "double": FieldDescriptor.TYPE_DOUBLE,
    "string": FieldDescriptor.TYPE_STRING,
    "bool": FieldDescriptor.TYPE_BOOL,
    "int32": FieldDescriptor.TYPE_INT32,
    "int64": FieldDescriptor.TYPE_INT64,
}
WELL_KNOWN = {"Timestamp": "google.protobuf.Timestamp",
              "google.protobuf.Timestamp": "google.protobuf.Timestamp",
              "google.protobuf.Empty": "google.protobuf.Empty"}


def _rows(text: str, header: str) -> list[list[str]]:
    """Body rows of every markdown table whose first header cell is `header`."""
    rows, inside = [], False
    for line in text.splitlines():
        if not line.startswith("|"):
            inside = False
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == header:
            inside = True
        elif inside and not all(set(c) <= {"-"} for c in cells):
            rows.append(cells)
    return rows


def wire_fields() -> list[tuple[str, str, int, str, str | None]]:
    """(message, field, number, type text, oneof name) from the contract's tables."""
    text = SNAPSHOT.read_text()
    out, message = [], ""
    for cells in _rows(text, "message"):
        if len(cells) != 4 or not cells[2].isdigit():
            continue
        message = cells[0] or message
        field, oneof = cells[1], None
        m = re.match(r"oneof (\w+): (\w+)", field)
        if m:
            oneof, field = m.group(1), m.group(2)
        type_text = re.sub(r"\s*(,\s*in \[.*|\(.*)$", "", cells[3]).strip()
        out.append((message, field, int(cells[2]), type_text, oneof))
    return out


def wire_enums() -> dict[str, dict[str, int]]:
    text = SNAPSHOT.read_text()
    enums = {}
    for cells in _rows(text, "enum"):
        if len(cells) != 2:
            continue
        values = {}
        for part in cells[1].split(","):
            m = re.match(r"\s*([A-Z_]+) (\d+)", part)
            assert m, f"cannot parse enum value {part!r}"
            values[m.group(1)] = int(m.group(2))
        enums[cells[0]] = values
    return enums


def wire_rpcs() -> list[tuple[str, str, str]]:
    return [(c[0], c[1], c[2]) for c in _rows(SNAPSHOT.read_text(), "rpc") if len(c) == 3]


def _descriptor(message: str):
    for module in (pb_memory, pb):
        if message in module.DESCRIPTOR.message_types_by_name:
            return module.DESCRIPTOR.message_types_by_name[message]
    raise AssertionError(f"message {message} is missing from our engram.v1 protos")


def test_snapshot_is_the_shared_contract() -> None:
    if SHARED.exists():  # beside a checkout, as in CI: the snapshot must be the contract
        assert SHARED.read_text() == SNAPSHOT.read_text(), (
            "tests/data/engram-v1.md differs from shared/wire/engram-v1.md: update it and "
            "the protos")


def test_table_was_parsed() -> None:
    fields = wire_fields()
    assert len(fields) > 120
    assert {"Memory", "Cue", "RecallRequest", "IntrospectResponse"} <= {f[0] for f in fields}
    assert len(wire_enums()) == 6
    assert len(wire_rpcs()) == 9


@pytest.mark.parametrize(("message", "field", "number", "type_text", "oneof"), wire_fields())
def test_field_matches_contract(message: str, field: str, number: int, type_text: str,
                                oneof: str | None) -> None:
    desc = _descriptor(message)
    assert desc.full_name == f"engram.v1.{message}"
    assert field in desc.fields_by_name, f"{message}.{field} is missing"
    fd = desc.fields_by_name[field]
    assert fd.number == number, f"{message}.{field} has number {fd.number}, wire says {number}"
    if oneof:
        assert fd.containing_oneof is not None and fd.containing_oneof.name == oneof
    map_m = re.match(r"map<(\w+), ([\w.]+)>", type_text)
    repeated = type_text.startswith("repeated ")
    base = type_text.removeprefix("repeated ").strip()
    if map_m:
        entry = fd.message_type
        assert entry is not None and entry.GetOptions().map_entry, f"{message}.{field}: not a map"
        key_t, value_t = map_m.groups()
        assert entry.fields_by_name["key"].type == SCALARS[key_t]
        value = entry.fields_by_name["value"]
        if value_t in SCALARS:
            assert value.type == SCALARS[value_t]
        else:
            assert value.enum_type is not None or value.message_type is not None
            named = value.enum_type or value.message_type
            assert named.name == value_t.split(".")[-1]
        return
    is_repeated = (fd.is_repeated if hasattr(fd, "is_repeated")
                   else fd.label == FieldDescriptor.LABEL_REPEATED)
    assert is_repeated == repeated, f"{message}.{field}: repeated mismatch"
    if base in SCALARS:
        assert fd.type == SCALARS[base], f"{message}.{field} should be {base}"
    elif base in WELL_KNOWN:
        assert fd.message_type is not None and fd.message_type.full_name == WELL_KNOWN[base]
    elif fd.type == FieldDescriptor.TYPE_ENUM:
        assert fd.enum_type.full_name == f"engram.v1.{base}"
    else:
        assert fd.type == FieldDescriptor.TYPE_MESSAGE, f"{message}.{field} should be {base}"
        assert fd.message_type.full_name == f"engram.v1.{base}"


def test_no_fields_beyond_contract() -> None:
    """engram.v1 stays exactly the contract: our extras live in engram_cli.ext.v1."""
    listed: dict[str, set[str]] = {}
    for message, field, *_ in wire_fields():
        listed.setdefault(message, set()).add(field)
    for message, fields in listed.items():
        ours = set(_descriptor(message).fields_by_name)
        assert ours == fields, f"{message}: extra {ours - fields}, missing {fields - ours}"


@pytest.mark.parametrize(("enum", "values"), sorted(wire_enums().items()))
def test_enum_matches_contract(enum: str, values: dict[str, int]) -> None:
    module = pb_memory if enum in pb_memory.DESCRIPTOR.enum_types_by_name else pb
    desc = module.DESCRIPTOR.enum_types_by_name[enum]
    prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum).upper() + "_"
    ours = {v.name: v.number for v in desc.values}
    assert ours == {prefix + k: n for k, n in values.items()}


def test_service_matches_contract() -> None:
    service = pb.DESCRIPTOR.services_by_name["EngramService"]
    assert service.full_name == "engram.v1.EngramService"
    ours = {m.name: m for m in service.methods}
    assert set(ours) == {name for name, _, _ in wire_rpcs()}
    for name, request, response in wire_rpcs():
        m = ours[name]
        assert m.client_streaming == request.startswith("stream "), name
        assert m.server_streaming == response.startswith("stream "), name
        assert m.input_type.name == request.removeprefix("stream ").strip()
        assert m.output_type.name == response.removeprefix("stream ").split()[0]


def test_extensions_live_outside_engram_v1() -> None:
    assert ext.DESCRIPTOR.package == "engram_cli.ext.v1"
    assert pb.DESCRIPTOR.package == pb_memory.DESCRIPTOR.package == "engram.v1"


def test_generated_stubs_are_current() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
