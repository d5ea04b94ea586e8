"""Shared helpers for end-to-end tests: run the CLI as a user would, match boxes against ground truth."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def edgeinfer(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgeinfer", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        check=False,
    )


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes a (N, 4) and b (M, 4), xyxy."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def match(found: list[dict], truth: list[dict], threshold: float = 0.5) -> int:
    """Greedy one-to-one matches (same label, IoU >= threshold), best score first."""
    if not found or not truth:
        return 0
    found = sorted(found, key=lambda d: -d.get("score", 1.0))
    overlaps = iou(np.array([d["box"] for d in found], float), np.array([t["box"] for t in truth], float))
    used: set[int] = set()
    matched = 0
    for i, det in enumerate(found):
        for j in np.argsort(-overlaps[i]):
            if j in used or overlaps[i, j] < threshold:
                continue
            if truth[j]["label"] == det["label"]:
                used.add(int(j))
                matched += 1
                break
    return matched
