"""Generate the Python stubs in engram_cli/rpc/ from proto/.

    python scripts/gen_protos.py          # regenerate in place
    python scripts/gen_protos.py --check  # exit 1 if the committed stubs are stale

The proto files sit at proto/engram_cli/rpc/..., so protoc's output imports as
`engram_cli.rpc...` with no sys.path tricks. Stubs are committed so that `pip install .`
needs no protoc; tests/test_wire.py runs --check so stale stubs fail CI.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE_DIRS = ["engram_cli/rpc/engram/v1", "engram_cli/rpc/ext/v1"]


def generate(out: Path) -> None:
    import grpc_tools
    from grpc_tools import protoc

    include = Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *protos,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    for d in PACKAGE_DIRS:
        (out / d / "__init__.py").touch()


def stale_files(generated: Path) -> list[str]:
    stale = []
    for d in PACKAGE_DIRS:
        new_dir, old_dir = generated / d, ROOT / d
        names = {p.name for p in new_dir.iterdir()} | {
            p.name for p in old_dir.glob("*") if p.suffix in (".py", ".pyi")
        }
        for name in sorted(names):
            a, b = new_dir / name, old_dir / name
            if not (a.exists() and b.exists() and filecmp.cmp(a, b, shallow=False)):
                stale.append(f"{d}/{name}")
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale stubs")
    args = parser.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            stale = stale_files(Path(tmp))
        if stale:
            print("stale generated stubs (run scripts/gen_protos.py):", *stale, sep="\n  ")
            return 1
        print("generated stubs are current")
        return 0
    generate(ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
