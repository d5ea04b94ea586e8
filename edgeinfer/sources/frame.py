"""Frozen value types of the data plane."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True, eq=False)
class Frame:
    """One captured image. ``wall_ns`` is for outputs (event timestamps), ``mono`` for latency.

    ``seq`` numbers a camera's frames, increasing across restarts of the daemon (the capture starts after
    the highest seq the store has: :meth:`edgeinfer.store.sqlite.Store.next_seqs`). ``index`` is the
    frame's position in its source since the source was (re)opened, counting every frame read (for a file
    or folder: its position in it, from 0 again at each loop); None for frames not made by a Capture."""

    camera: str
    seq: int
    image: np.ndarray  # HxWx3 uint8, BGR (OpenCV's order)
    wall_ns: int
    mono: float  # time.monotonic() at capture
    index: int | None = None

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
