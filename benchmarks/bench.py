#!/usr/bin/env python3
"""Same as ``edgeinfer bench`` (for a checkout): ``python benchmarks/bench.py --sweep --json out.json``."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgeinfer.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
