"""Zones and lines in frame pixels, and where a box stands: the bottom-centre of the box (where an object
touches the ground in a camera looking down at a scene), as Frigate and DeepStream's analytics use it."""

from __future__ import annotations

import numpy as np


def foot_points(xyxy: np.ndarray) -> np.ndarray:
    """The bottom-centre of each box (N, 4 xyxy): (N, 2)."""
    return np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, xyxy[:, 3]], axis=1)


class Polygon:
    """A polygon (M, 2) with its edges precomputed: :meth:`contains` is a few array operations."""

    def __init__(self, points: np.ndarray) -> None:
        self.x1, self.y1 = points[:, 0].astype(np.float64), points[:, 1].astype(np.float64)
        self.y2 = np.roll(self.y1, -1)
        dy = self.y2 - self.y1
        with np.errstate(divide="ignore", invalid="ignore"):
            self.slope = (np.roll(self.x1, -1) - self.x1) / dy  # inf/nan for horizontal edges: never crossed

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Even-odd ray casting, vectorised over points (N, 2)."""
        x, y = points[:, 0:1], points[:, 1:2]
        crosses = (self.y1 > y) != (self.y2 > y)
        with np.errstate(invalid="ignore"):
            x_at = self.x1 + (y - self.y1) * self.slope
        inside: np.ndarray = np.logical_and(crosses, x < x_at).sum(axis=1) % 2 == 1
        return inside


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd ray casting, vectorised over points (N, 2) for one polygon (M, 2)."""
    return Polygon(polygon).contains(points)


def side_of_line(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per point (N, 2), the sign of the cross product (b - a) x (p - a): +1 on the right-hand side of the
    line walked from ``a`` to ``b`` as drawn on screen (y grows downwards), -1 on the left, 0 on it."""
    d = b - a
    cross = d[0] * (points[:, 1] - a[1]) - d[1] * (points[:, 0] - a[0])
    side: np.ndarray = np.sign(cross)
    return side


def crosses_segment(p: np.ndarray, q: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per step from p[i] to q[i] (N, 2 each): whether it goes from one side of the line a-b to the other
    through the segment a-b itself (an end point of the segment counts as on it)."""
    side_p, side_q = side_of_line(p, a, b), side_of_line(q, a, b)
    # the segment's end points must lie on either side of the step, too
    step = q - p
    ca = step[:, 0] * (a[1] - p[:, 1]) - step[:, 1] * (a[0] - p[:, 0])
    cb = step[:, 0] * (b[1] - p[:, 1]) - step[:, 1] * (b[0] - p[:, 0])
    out: np.ndarray = (side_p * side_q < 0) & (np.sign(ca) * np.sign(cb) <= 0)
    return out
