"""One capture thread per camera: open, read, pace, deliver; reconnect with backoff on failure.

States: ``connecting`` (making and opening a reader) -> ``running`` (reading frames) -> on a failure
``backoff`` (waiting to retry) -> ``connecting`` ...; ``stopped`` before start(), after stop(), and when a
file or folder with ``loop: false`` ends (then ``finished`` is True). Nothing raises out of the thread.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Literal

import numpy as np

from edgeinfer.aio import Backoff
from edgeinfer.config import CameraConfig
from edgeinfer.errors import SourceError
from edgeinfer.sources.base import FrameReader
from edgeinfer.sources.factory import open_reader
from edgeinfer.sources.frame import Frame
from edgeinfer.sources.redact import describe_source, redact_url

logger = logging.getLogger(__name__)

CaptureState = Literal["connecting", "running", "backoff", "stopped"]
LIVE_TOLERANCE = 0.25  # a live frame up to this fraction of a period early still counts as due


class Capture:
    """Reads one camera on a daemon thread and hands each frame to ``deliver`` (called on that thread).

    Pacing: with an fps target, at most that many frames per second are delivered (a live source is
    still read continuously; frames not due are counted in ``skipped``). Without one, a live source
    delivers every frame, and a non-live source (file, folder, synthetic) is demand-driven: after each
    frame it waits for :meth:`frame_taken` (or ``demand_timeout_s``) before producing the next.

    ``captured``, ``skipped``, ``errors``, ``reconnects``, ``deliver_errors``, ``state``, ``finished`` and
    ``last_frame_mono`` may be read from any thread.
    """

    def __init__(
        self,
        camera: CameraConfig,
        deliver: Callable[[Frame], None],
        *,
        reader_factory: Callable[[CameraConfig], FrameReader] = open_reader,
        clock: Callable[[], float] = time.monotonic,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        jitter: Callable[[], float] = random.random,
        demand_timeout_s: float = 1.0,
        seq_start: int = 0,
    ) -> None:
        self.camera = camera
        self._deliver = deliver
        self._reader_factory = reader_factory
        self._clock = clock
        self._backoff = Backoff(backoff_initial_s, backoff_max_s, jitter)
        self._demand_timeout_s = demand_timeout_s
        self._stop = threading.Event()
        self._wake = threading.Event()  # frame_taken(), set_fps() and stop() cut a wait short
        self._fps_lock = threading.Lock()
        self._fps_override: tuple[float | None, float | None] | None = None
        self._thread: threading.Thread | None = None
        self._failing = False  # the last open or read failed; the next successful open is a reconnect
        self._seq = seq_start  # the next frame's seq (the daemon continues after the store's highest)
        self.description = describe_source(camera.source)
        self.state: CaptureState = "stopped"
        self.finished = False
        self.captured = 0
        self.skipped = 0
        self.errors = 0
        self.reconnects = 0
        self.deliver_errors = 0
        self.last_frame_mono: float | None = None
        self.last_error: str | None = None

    # ------------------------------------------------------------------ control (any thread)

    @property
    def name(self) -> str:
        return self.camera.name

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"capture {self.name} already started")
        self.state = "connecting"
        self._thread = threading.Thread(target=self._run, name=f"edgeinfer[{self.name}].capture", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> bool:
        """Ask the thread to end and join it. True when it has ended (it closes its reader itself)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning(
                    "camera %s: capture thread still blocked in its source after %.1f s", self.name, timeout
                )
                return False
        self.state = "stopped"
        return True

    def frame_taken(self) -> None:
        """The consumer took this camera's latest frame: a demand-driven source may produce the next."""
        self._wake.set()

    def set_fps(self, fps: float | None, until_mono: float | None = None) -> None:
        """Use ``fps`` (None: as fast as the source / on demand) instead of the configured rate until
        ``clock()`` reaches ``until_mono`` (None: until the next set_fps). ``set_fps(camera.fps)`` reverts."""
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be positive or None, got {fps}")
        with self._fps_lock:
            self._fps_override = (fps, until_mono)
        self._wake.set()

    def target_fps(self) -> float | None:
        """The rate in force now: an unexpired set_fps override, else the configured fps."""
        with self._fps_lock:
            if self._fps_override is not None:
                fps, until = self._fps_override
                if until is None or self._clock() < until:
                    return fps
                self._fps_override = None
        return self.camera.fps

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self._session():
                    self.finished = True
                    break
        except BaseException:  # a bug here must not take the process down; say so loudly
            logger.exception("camera %s: capture thread crashed", self.name)
        finally:
            self.state = "stopped"

    def _session(self) -> bool:
        """One reader from open to close. True when the source ended for good (no loop)."""
        self.state = "connecting"
        reader: FrameReader | None = None
        try:
            reader = self._reader_factory(self.camera)
            reader.open()
            self.description = reader.describe()
            if self._failing:
                self.reconnects += 1
                logger.info(
                    "camera %s: %s reopened after %d errors", self.name, self.description, self.errors
                )
            else:
                logger.info("camera %s: capturing from %s", self.name, self.description)
            self._failing = False
            self.state = "running"
            return self._stream(reader)
        except SourceError as exc:
            reason = str(exc)
        except Exception as exc:
            logger.debug("camera %s: unexpected error", self.name, exc_info=True)
            reason = f"unexpected {type(exc).__name__}: {exc}"
        finally:
            if reader is not None:
                self._close(reader)
        self._fail(redact_url(reason))
        return False

    def _fail(self, reason: str) -> None:
        self.errors += 1
        self._failing = True
        self.last_error = reason
        delay = self._backoff.next_delay()
        if self._stop.is_set():
            return
        self.state = "backoff"
        where = "" if reason.startswith(self.description) else f"{self.description}: "
        logger.warning("camera %s: %s%s; retrying in %.2f s", self.name, where, reason, delay)
        self._stop.wait(delay)

    def _close(self, reader: FrameReader) -> None:
        try:
            reader.close()
        except Exception:
            logger.warning("camera %s: closing %s failed", self.name, self.description, exc_info=True)

    def _stream(self, reader: FrameReader) -> bool:
        frames = 0  # since the last open
        last_fps: float | None = None
        next_due: float | None = None
        while not self._stop.is_set():
            self._wake.clear()
            fps = self.target_fps()
            if fps != last_fps:
                last_fps, next_due = fps, None  # a new rate starts now
            period = 1.0 / fps if fps else None
            if not reader.live and period is not None and next_due is not None:
                remaining = next_due - self._clock()
                if remaining > 0:
                    self._wake.wait(remaining)
                    continue  # re-check stop, the rate and the due time
            image = reader.read()
            if image is None:
                if reader.live:
                    raise SourceError("the stream ended" if frames else "no frames after opening")
                if frames == 0:
                    raise SourceError(f"{reader.describe()}: no frames in it")
                if not self.camera.loop:
                    logger.info("camera %s: %s ended (loop: false)", self.name, self.description)
                    return True
                reader.close()
                reader.open()
                frames = 0
                continue
            frames += 1
            if frames == 1:
                self._backoff.reset()
            now = self._clock()
            if period is not None:
                if next_due is not None and now < next_due - LIVE_TOLERANCE * period:
                    self.skipped += 1  # only a live source gets here: it must be read anyway
                    continue
                if next_due is None or now - next_due >= period:
                    next_due = now + period  # late (or first): the schedule restarts from now
                else:
                    next_due += period
            elif not reader.live:
                self._wake.clear()  # demand-driven: wait for this frame to be taken
            self._emit(image, now, frames - 1)
            if period is None and not reader.live:
                self._wake.wait(self._demand_timeout_s)
        return False

    def _emit(self, image: np.ndarray, now: float, index: int) -> None:
        frame = Frame(
            camera=self.name, seq=self._seq, image=image, wall_ns=time.time_ns(), mono=now, index=index
        )
        self._seq += 1
        self.captured += 1
        self.last_frame_mono = now
        try:
            self._deliver(frame)
        except Exception:
            self.deliver_errors += 1
            if self.deliver_errors == 1:
                logger.exception("camera %s: deliver() raised (logged once, counted after)", self.name)
