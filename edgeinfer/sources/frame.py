"""Frozen value types of the data plane."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One captured image. ``wall_ns`` is for outputs (event timestamps), ``mono`` for latency."""

    camera: str
    seq: int
    image: np.ndarray  # HxWx3 uint8, BGR (OpenCV's order)
    wall_ns: int
    mono: float  # time.monotonic() at capture

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
