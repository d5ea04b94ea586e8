"""The cameras: one :class:`~edgeinfer.sources.capture.Capture` thread each, their triggers, demand,
and whether each is up and delivering."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from edgeinfer.config import CameraConfig
from edgeinfer.sources.capture import Capture
from edgeinfer.sources.factory import open_reader
from edgeinfer.sources.frame import Frame

logger = logging.getLogger(__name__)


class Cameras:
    """Starts, triggers and stops the capture threads. ``captures`` is empty until :meth:`start`."""

    def __init__(
        self,
        cameras: Sequence[CameraConfig],
        *,
        reader_factory: Callable[..., Any] = open_reader,
        clock: Callable[[], float] = time.monotonic,
        seq_start: Mapping[str, int] | None = None,
    ) -> None:
        self._cameras = list(cameras)
        self._seq_start = dict(seq_start or {})
        self._reader_factory, self._clock = reader_factory, clock
        self.captures: dict[str, Capture] = {}

    def start(self, deliver: Callable[[Frame], None]) -> None:
        """Start every camera's thread; ``deliver`` is called on those threads with each frame."""
        for camera in self._cameras:
            capture = Capture(
                camera,
                deliver,
                reader_factory=self._reader_factory,
                clock=self._clock,
                seq_start=self._seq_start.get(camera.name, 0),
            )
            self.captures[camera.name] = capture
            capture.start()

    async def stop(self, join_s: float = 2.0) -> None:
        """Stop every thread, waiting up to ``join_s`` for each (in parallel)."""
        await asyncio.gather(*(asyncio.to_thread(c.stop, join_s) for c in self.captures.values()))

    def taken(self, frames: Iterable[Frame]) -> None:
        """These frames left the batcher: their (demand-driven) sources may produce the next."""
        for frame in frames:
            self.captures[frame.camera].frame_taken()

    def trigger(self, camera: str, fps: float, for_s: float) -> None:
        """A sensor rule raises a camera's rate for a while."""
        capture = self.captures.get(camera)
        if capture is not None:
            capture.set_fps(fps, self._clock() + for_s)
            logger.info("trigger: camera %s at %.1f fps for %.0f s", camera, fps, for_s)

    def all_finished(self) -> bool:
        """Every started source has ended for good (files and folders with ``loop: false``)."""
        return bool(self.captures) and all(c.finished for c in self.captures.values())

    def up(self) -> dict[str, bool]:
        """Per started camera: is it reading frames now."""
        return {name: c.state == "running" for name, c in self.captures.items()}

    def delivering(self, max_age_s: float) -> list[str]:
        """The cameras whose latest frame is younger than ``max_age_s``."""
        now = self._clock()
        return [
            name
            for name, c in self.captures.items()
            if c.last_frame_mono is not None and now - c.last_frame_mono < max_age_s
        ]
