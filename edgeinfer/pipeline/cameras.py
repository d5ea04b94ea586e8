"""The cameras: one :class:`~edgeinfer.sources.capture.Capture` thread each, their triggers, demand, the
frame watchdog, and each camera's health (:class:`CameraHealth`: up, starting, retrying or down, and why),
which /readyz and the metrics (:class:`CameraCollector`) report."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from edgeinfer.config import CameraConfig
from edgeinfer.sources.capture import STALL_S, Capture
from edgeinfer.sources.factory import open_reader
from edgeinfer.sources.frame import Frame
from edgeinfer.sources.redact import redact_url

logger = logging.getLogger(__name__)

CameraState = Literal["up", "starting", "retrying", "down"]
CAMERA_STATES: tuple[CameraState, ...] = ("up", "starting", "retrying", "down")
FRESH_S = 5.0  # a camera is up while its latest frame is younger than this (or two frame periods)


@dataclass(frozen=True, slots=True)
class CameraHealth:
    """One camera now. ``detail`` says why it is not up (the last error, URL passwords redacted)."""

    name: str
    state: CameraState
    detail: str = ""

    def describe(self) -> str:
        return f"{self.name} ({self.detail})" if self.detail else self.name


class Cameras:
    """Starts, triggers and stops the capture threads. ``captures`` is empty until :meth:`start`."""

    def __init__(
        self,
        cameras: Sequence[CameraConfig],
        *,
        reader_factory: Callable[..., Any] = open_reader,
        clock: Callable[[], float] = time.monotonic,
        seq_start: Mapping[str, int] | None = None,
        stall_s: float = STALL_S,
    ) -> None:
        self._cameras = list(cameras)
        self._seq_start = dict(seq_start or {})
        self._stall_s = stall_s
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
                stall_s=self._stall_s,
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
        """Per started camera: is it delivering frames now (a frozen camera is not)."""
        return {h.name: h.state == "up" for h in self.health()}

    def watchdog(self) -> list[str]:
        """Restart the cameras whose source froze; returns their names (see Capture.watchdog)."""
        return [name for name, c in self.captures.items() if c.watchdog() is not None]

    def threads(self) -> int:
        """Capture threads alive, abandoned ones included (for leak checks)."""
        return sum(c.threads() for c in self.captures.values())

    def health(self, fresh_s: float = FRESH_S) -> list[CameraHealth]:
        """Every started camera's state: up (delivering), starting (no frame and no error yet), retrying
        (reconnecting after an error or a freeze) or down (not delivering and not being retried: ended,
        stopped, frozen with its previous reader still blocked, or running without a recent frame)."""
        now = self._clock()
        return [_health(name, c, now, fresh_s) for name, c in self.captures.items()]

    def delivering(self, max_age_s: float) -> list[str]:
        """The cameras whose latest frame is younger than ``max_age_s``."""
        now = self._clock()
        return [
            name
            for name, c in self.captures.items()
            if c.last_frame_mono is not None and now - c.last_frame_mono < max_age_s
        ]


def _health(name: str, c: Capture, now: float, fresh_s: float) -> CameraHealth:
    fps = c.target_fps()
    limit = max(fresh_s, 2.0 / fps) if fps else fresh_s
    last = c.last_frame_mono
    age = None if last is None else now - last
    state = c.state
    if state == "running" and age is not None and age < limit:
        return CameraHealth(name, "up")
    error = redact_url(c.last_error) if c.last_error else None
    if c.finished:
        return CameraHealth(name, "down", "the source ended (loop: false)")
    if state == "stopped":
        return CameraHealth(name, "down", error or "stopped")
    if c.blocked and now - c.state_since >= limit:
        return CameraHealth(name, "down", f"{error}; its previous reader is still blocked in the source")
    if state in ("backoff", "connecting") and error is not None:
        when = "no frame yet" if age is None else f"no frame for {age:.0f} s"
        return CameraHealth(name, "retrying", f"{error}; {c.errors} error(s), {when}")
    if last is None:
        return CameraHealth(name, "starting", f"opening {c.description}")
    return CameraHealth(name, "down", f"no frame for {age:.1f} s")


class CameraCollector:
    """Prometheus metrics of the cameras, read when scraped: ``edgeinfer_camera_state{camera,state}`` (1 for
    the camera's state, 0 for the others), ``edgeinfer_camera_restarts_total{camera,reason=error|frozen}``
    and ``edgeinfer_camera_frame_age_seconds{camera}``. Register it on the daemon's registry."""

    def __init__(self, cameras: Cameras, fresh_s: float = FRESH_S) -> None:
        self._cameras, self._fresh_s = cameras, fresh_s

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "edgeinfer_camera_state",
            "1 for the camera's state (up, starting, retrying, down); /readyz says why",
            labels=["camera", "state"],
        )
        restarts = CounterMetricFamily(
            "edgeinfer_camera_restarts",
            "Reconnects of a camera: after an open or read error, or after the watchdog found it frozen",
            labels=["camera", "reason"],
        )
        age = GaugeMetricFamily(
            "edgeinfer_camera_frame_age_seconds", "Seconds since the camera's latest frame", labels=["camera"]
        )
        now = self._cameras._clock()
        for health in self._cameras.health(self._fresh_s):
            capture = self._cameras.captures[health.name]
            for name in CAMERA_STATES:
                state.add_metric([health.name, name], 1.0 if health.state == name else 0.0)
            restarts.add_metric([health.name, "error"], capture.errors - capture.stalls)
            restarts.add_metric([health.name, "frozen"], capture.stalls)
            if capture.last_frame_mono is not None:
                age.add_metric([health.name], now - capture.last_frame_mono)
        yield state
        yield restarts
        yield age
