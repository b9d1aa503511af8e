"""Shim: the generator lives in engram_cli/benchsuite/datagen.py; benchmark scripts that put
benchmarks/ on sys.path keep writing `import datagen`.

    python benchmarks/datagen.py 200000 > memories.jsonl
"""

import sys

from engram_cli.benchsuite.datagen import *  # noqa: F403
from engram_cli.benchsuite.datagen import main

if __name__ == "__main__":
    sys.exit(main())
