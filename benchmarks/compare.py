#!/usr/bin/env python3
"""Compare two benchmark runs: ``python benchmarks/compare.py BASE.json NEW.json``.

Same as ``edgeinfer bench --compare BASE.json NEW.json``: one line per configuration present in both,
and a verdict that only counts a change when the two runs' [min-max] ranges over repeats do not overlap.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgeinfer.bench.cli import main

if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(["--compare", sys.argv[1], sys.argv[2]]))
