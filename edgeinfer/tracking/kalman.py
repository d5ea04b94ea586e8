"""Constant-velocity Kalman filter for boxes, vectorised over every track of a camera.

The state of a box is its centre, width and height (``cx, cy, w, h``) and their velocities, in pixels and
pixels per frame. The motion model, the process noise and the measurement noise (scaled by the box's own
width or height, as ByteTrack's and BoT-SORT's filters do) are the same for each of the four coordinates and
never couple them, so the 8x8 covariance of a track is four independent 2x2 blocks (position, velocity).
Stored as three arrays of shape (N, 4) (``p00`` position variance, ``p01`` covariance, ``p11`` velocity
variance), predict and update are a handful of element-wise numpy operations for all tracks at once,
instead of N batched 8x8 matrix products and inversions.
"""

from __future__ import annotations

import numpy as np

# Noise as a fraction of the box's size (width for cx and w, height for cy and h), per frame: the values
# ByteTrack's filter uses (std_weight_position 1/20, std_weight_velocity 1/160).
POSITION_WEIGHT = 1.0 / 20
VELOCITY_WEIGHT = 1.0 / 160


def xyxy_to_cxcywh(xyxy: np.ndarray) -> np.ndarray:
    out = np.empty((len(xyxy), 4), np.float64)
    out[:, 0] = (xyxy[:, 0] + xyxy[:, 2]) * 0.5
    out[:, 1] = (xyxy[:, 1] + xyxy[:, 3]) * 0.5
    out[:, 2] = xyxy[:, 2] - xyxy[:, 0]
    out[:, 3] = xyxy[:, 3] - xyxy[:, 1]
    return out


def cxcywh_to_xyxy(box: np.ndarray) -> np.ndarray:
    half = box[:, 2:4] * 0.5
    return np.concatenate([box[:, 0:2] - half, box[:, 0:2] + half], axis=1)


def _scale(box: np.ndarray) -> np.ndarray:
    """Per coordinate, the size its noise scales with: (w, h, w, h), at least one pixel."""
    wh = np.maximum(box[:, 2:4], 1.0)
    return np.concatenate([wh, wh], axis=1)


class BoxKalman:
    """The filter states of N tracks: ``mean`` (N, 4) boxes, ``velocity`` (N, 4), covariance blocks.

    Rows are tracks; :meth:`append`, :meth:`keep` and the index arguments address them by row."""

    def __init__(self) -> None:
        self.mean = np.zeros((0, 4))
        self.velocity = np.zeros((0, 4))
        self.p00 = np.zeros((0, 4))
        self.p01 = np.zeros((0, 4))
        self.p11 = np.zeros((0, 4))

    def __len__(self) -> int:
        return len(self.mean)

    def append(self, xyxy: np.ndarray) -> None:
        """Start a filter per box (N, 4 xyxy) at rest, with ByteTrack's initial uncertainty."""
        box = xyxy_to_cxcywh(xyxy)
        scale = _scale(box)
        self.mean = np.concatenate([self.mean, box])
        self.velocity = np.concatenate([self.velocity, np.zeros_like(box)])
        self.p00 = np.concatenate([self.p00, (2 * POSITION_WEIGHT * scale) ** 2])
        self.p01 = np.concatenate([self.p01, np.zeros_like(box)])
        self.p11 = np.concatenate([self.p11, (10 * VELOCITY_WEIGHT * scale) ** 2])

    def keep(self, rows: np.ndarray) -> None:
        """Keep only these rows (an index array or a boolean mask), in that order."""
        self.mean, self.velocity = self.mean[rows], self.velocity[rows]
        self.p00, self.p01, self.p11 = self.p00[rows], self.p01[rows], self.p11[rows]

    def predict(self) -> None:
        """One frame ahead for every track: x += v; P = F P F' + Q."""
        if not len(self.mean):
            return
        scale = _scale(self.mean)
        self.mean += self.velocity
        self.p00 += 2 * self.p01 + self.p11 + (POSITION_WEIGHT * scale) ** 2
        self.p01 += self.p11
        self.p11 += (VELOCITY_WEIGHT * scale) ** 2
        # a box that shrinks past zero is lost anyway; keep it a box
        np.maximum(self.mean[:, 2:4], 1.0, out=self.mean[:, 2:4])

    def update(self, rows: np.ndarray, xyxy: np.ndarray) -> None:
        """Correct the tracks at ``rows`` with their measured boxes (len(rows), 4 xyxy)."""
        if not len(rows):
            return
        z = xyxy_to_cxcywh(xyxy)
        p00, p01, p11 = self.p00[rows], self.p01[rows], self.p11[rows]
        r = (POSITION_WEIGHT * _scale(self.mean[rows])) ** 2
        s = p00 + r
        k0, k1 = p00 / s, p01 / s
        innovation = z - self.mean[rows]
        self.mean[rows] += k0 * innovation
        self.velocity[rows] += k1 * innovation
        self.p00[rows] = (1 - k0) * p00
        self.p01[rows] = (1 - k0) * p01
        self.p11[rows] = p11 - k1 * p01

    def boxes(self) -> np.ndarray:
        """Every track's box now, (N, 4) xyxy."""
        return cxcywh_to_xyxy(self.mean)
