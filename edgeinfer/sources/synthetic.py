"""Synthetic frames from :class:`edgeinfer.synthetic.MovingScene` (tests and benchmarks)."""

from __future__ import annotations

import numpy as np

from edgeinfer.config import SyntheticSourceConfig
from edgeinfer.errors import SourceError
from edgeinfer.synthetic import MovingScene


class SyntheticReader:
    """An endless deterministic clip. ``read`` never returns None.

    With ``prerender: N`` the first N frames are rendered once into a ring, so a benchmark measures the
    pipeline rather than the renderer. The ring plays forward and back (0, 1, ..., N-1, N-2, ..., 1, 0,
    1, ...): the shapes reverse instead of jumping back to where they started, so a tracker sees the
    continuous motion a real camera gives (a jump every N frames ended and restarted every track, and the
    new tracks' snapshots took 15 % of a core in the benchmark). Ring images are read-only
    and shared between passes (copy one before drawing on it).
    """

    live = False

    def __init__(self, config: SyntheticSourceConfig) -> None:
        self.config = config
        self._scene: MovingScene | None = None
        self._ring: list[np.ndarray] = []
        self._index = 0

    def describe(self) -> str:
        c = self.config
        ring = f", prerender {c.prerender}" if c.prerender else ""
        return f"synthetic(seed={c.seed}, {c.width}x{c.height}, {c.objects} objects{ring})"

    def open(self) -> None:
        c = self.config
        if self._scene is None:
            try:
                self._scene = MovingScene(c.seed, width=c.width, height=c.height, n_objects=c.objects)
            except ValueError as exc:  # e.g. a frame too small for the shapes
                raise SourceError(f"{self.describe()}: cannot build the scene: {exc}") from None
            if c.prerender:
                self._ring = [self._render_readonly(i) for i in range(c.prerender)]
        self._index = 0

    def _render_readonly(self, index: int) -> np.ndarray:
        assert self._scene is not None
        image = self._scene.render(index)[0]
        image.setflags(write=False)
        return image

    def read(self) -> np.ndarray | None:
        if self._scene is None:
            self.open()
        assert self._scene is not None
        index, self._index = self._index, self._index + 1
        if self._ring:
            return self._ring[_ping_pong(index, len(self._ring))]
        return self._scene.render(index)[0]

    def close(self) -> None:
        self._index = 0  # the scene and ring are kept: reopening (looping) costs nothing


def _ping_pong(index: int, n: int) -> int:
    """The ``index``-th position of a walk 0, 1, ..., n-1, n-2, ..., 1, 0, 1, ... over n items."""
    if n == 1:
        return 0
    i = index % (2 * n - 2)
    return i if i < n else 2 * n - 2 - i
