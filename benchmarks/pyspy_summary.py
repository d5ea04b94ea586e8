#!/usr/bin/env python3
"""Summarise a ``py-spy record -t -f raw`` profile: samples per thread, and per (thread, innermost
edgeinfer frame), so "where the time goes" reads as a short table.

    .venv/bin/py-spy record -t -r 100 -f raw -o prof.txt -- \\
        .venv/bin/python -m edgeinfer.bench.worker '{"cameras": 4, "max_batch_size": 4, "repeats": 1}'
    python benchmarks/pyspy_summary.py prof.txt
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path


def summarise(path: Path, top: int = 25) -> str:
    by_thread: Counter[str] = Counter()
    by_frame: Counter[tuple[str, str]] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        thread = re.sub(r"thread \(\d+\):? ?", "", frames[0]) or "main (no name)"
        thread = re.sub(r"\[cam\d+\]", "[camN]", thread)
        ours = [f for f in frames[1:] if "edgeinfer/" in f and "edgeinfer/bench/" not in f]
        leaf = ours[-1] if ours else (frames[-1] if len(frames) > 1 else "?")
        by_thread[thread] += n
        by_frame[(thread, leaf)] += n
    lines = [f"{total} samples (non-idle), by thread:"]
    lines += [f"  {n:6d} {100 * n / total:5.1f}%  {t}" for t, n in by_thread.most_common()]
    lines.append(f"top {top} (thread | innermost edgeinfer frame):")
    lines += [f"  {n:6d} {100 * n / total:5.1f}%  {t} | {f}" for (t, f), n in by_frame.most_common(top)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.stdout.write(summarise(Path(sys.argv[1])))
