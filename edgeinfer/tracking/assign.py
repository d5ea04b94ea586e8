"""The association step: IoU between boxes and a thresholded linear assignment.

The assignment is solved by ``lap.lapjv`` (the ``lapx`` package: Jonker-Volgenant, C++, a 0.3 MB wheel
for x86_64 and aarch64) rather than a hand-written solver; ``cost_limit`` leaves a pair unmatched when
its cost is above the gate, so a far-off detection starts its own track instead of stealing one. In a
steady scene every track's cheapest detection is a different one; that is already the best assignment and
is taken without the solver (:func:`_distinct_cheapest`).
"""

from __future__ import annotations

import lap
import numpy as np

_EMPTY = np.zeros(0, np.int64)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (N, 4 xyxy) with every box of ``b`` (M, 4): (N, M)."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    out: np.ndarray = inter / np.maximum(union, 1e-9)
    return out


def match(cost: np.ndarray, max_cost: float) -> tuple[np.ndarray, np.ndarray]:
    """The minimum-cost one-to-one pairs of rows and columns with cost <= ``max_cost``.

    Returns (rows, cols), index arrays of equal length; rows and columns left out are unmatched."""
    if cost.size == 0:
        return _EMPTY, _EMPTY
    cheapest = _distinct_cheapest(cost, max_cost)
    if cheapest is not None:
        return cheapest
    _, row_to_col, _ = lap.lapjv(cost, extend_cost=True, cost_limit=max_cost + 1e-9)
    rows = np.flatnonzero(row_to_col >= 0)
    cols = row_to_col[rows].astype(np.int64)
    ok = cost[rows, cols] <= max_cost
    return rows[ok], cols[ok]


def _distinct_cheapest(cost: np.ndarray, max_cost: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The pairs of the minimum-cost assignment when it is each row's cheapest column, or None.

    With no more rows than columns: when the rows that have a pair within the gate all have different
    cheapest columns, pairing each with it is optimal (no row can do better, and leaving a pair out costs
    the gate, more than the pair); the rows without one stay unmatched in any assignment. With more rows
    than columns, the same by columns (on the transpose). Returned as :func:`match` does, rows ascending."""
    if cost.shape[0] > cost.shape[1]:
        found = _distinct_cheapest(cost.T, max_cost)
        if found is None:
            return None
        cols, rows = found
        order = np.argsort(rows)
        return rows[order], cols[order]
    cols = cost.argmin(axis=1)
    rows = np.flatnonzero(cost[np.arange(len(cols)), cols] <= max_cost)
    cols = cols[rows].astype(np.int64)
    if len(np.unique(cols)) != len(cols):
        return None
    return rows, cols
