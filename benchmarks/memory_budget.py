#!/usr/bin/env python3
"""Where the daemon's resident memory goes: RSS after each import and each runtime object, in order.

The LiteRT backend keeps one interpreter per batch size it has run (resizing one interpreter on every
change of batch size costs more than the inference), and XNNPACK repacks the weights for each, so a
detector instance that has seen batches of 1 to 4 holds four interpreters. This prints RSS after the
interpreter, numpy, OpenCV and LiteRT imports, the daemon's modules, then per instance after each batch
size's first run. Run: ``python benchmarks/memory_budget.py [--instances 2] [--max-batch 4]``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text(encoding="ascii").split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=4)
    args = parser.parse_args()
    rows = [("python", rss_mb())]
    import numpy as np

    rows.append(("+ numpy", rss_mb()))
    import cv2  # noqa: F401

    rows.append(("+ opencv", rss_mb()))
    from ai_edge_litert import interpreter  # noqa: F401

    rows.append(("+ LiteRT", rss_mb()))
    import edgeinfer.app.daemon  # noqa: F401  (every module the daemon imports)

    rows.append((f"+ the daemon's modules ({len(sys.modules)} modules loaded)", rss_mb()))
    from edgeinfer.config import DetectorConfig
    from edgeinfer.detect.build import open_detector

    image = np.zeros((480, 640, 3), np.uint8)
    detectors = []
    for i in range(args.instances):
        detectors.append(open_detector(DetectorConfig(model="bundled", threads=1)))
        rows.append((f"+ instance {i + 1} opened (batch-1 interpreter)", rss_mb()))
        for n in range(1, args.max_batch + 1):
            detectors[-1].detect([image] * n)
            rows.append((f"  + its first batch of {n}", rss_mb()))
    previous = 0.0
    for name, mb in rows:
        print(f"{mb:7.1f} MB  {mb - previous:+6.1f}  {name}")
        previous = mb
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
