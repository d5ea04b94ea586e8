"""One capture thread per camera: open, read, pace, deliver; reconnect with backoff on failure.

States: ``connecting`` (making and opening a reader) -> ``running`` (reading frames) -> on a failure
``backoff`` (waiting to retry) -> ``connecting`` ...; ``stopped`` before start(), after stop(), and when a
file or folder with ``loop: false`` ends (then ``finished`` is True). Nothing raises out of the thread.

The frame watchdog (:meth:`Capture.watchdog`, called periodically by the pipeline): a source that
freezes, an open or a read that blocks without an error and without a frame (a network camera that went
away without closing the connection), is abandoned after ``stall_s`` (``open_timeout_s`` while opening):
its thread is left to return from the blocked call on its own (it then closes its reader and delivers
nothing), and a new thread with a new reader takes over, with the usual backoff. At most one abandoned
thread per camera: while it is still blocked the camera is not restarted again (``blocked`` is True).
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
STALL_S = 10.0  # no frame for this long while running (and at least 3 frame periods): frozen
OPEN_TIMEOUT_S = 30.0  # an open that has not returned after this long: frozen too


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
        stall_s: float = STALL_S,
        open_timeout_s: float = OPEN_TIMEOUT_S,
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
        self._abandoned: threading.Thread | None = (
            None  # a thread the watchdog gave up on, maybe still blocked
        )
        self._generation = 0  # which thread is the camera's: an abandoned one sees a newer value and ends
        self._gen_lock = threading.Lock()
        self._stall_s, self._open_timeout_s = stall_s, open_timeout_s
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
        self.stalls = 0  # times the watchdog found the source frozen and restarted it
        self.state_since = clock()  # when ``state`` last changed (the watchdog measures from there)

    # ------------------------------------------------------------------ control (any thread)

    @property
    def name(self) -> str:
        return self.camera.name

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"capture {self.name} already started")
        self._spawn()

    def _spawn(self) -> None:
        """Start the camera's thread for the current generation (under ``_gen_lock`` or before start)."""
        self._set_state("connecting", self._generation)
        gen = self._generation
        self._thread = threading.Thread(
            target=self._run, args=(gen,), name=f"edgeinfer[{self.name}].capture", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> bool:
        """Ask the thread to end and join it. True when it has ended (it closes its reader itself).
        An abandoned thread still blocked in its source is not waited for (it is a daemon thread)."""
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

    @property
    def blocked(self) -> bool:
        """An abandoned thread is still blocked in its source (the camera cannot be restarted again)."""
        return self._abandoned is not None and self._abandoned.is_alive()

    def threads(self) -> int:
        """Live threads of this camera (its own, plus one abandoned while blocked): for leak checks."""
        return sum(1 for t in (self._thread, self._abandoned) if t is not None and t.is_alive())

    def watchdog(self) -> str | None:
        """Restart a frozen source (see the module docstring). Returns why it did, None when it did not.
        Cheap; call it every fraction of a second from any one thread."""
        if self._stop.is_set() or self._thread is None or self.finished:
            return None
        now = self._clock()
        state = self.state
        if state == "running":
            fps = self.target_fps()
            limit = max(self._stall_s, 3.0 / fps) if fps else self._stall_s
            since = max(self.state_since, self.last_frame_mono or self.state_since)
            what = "no frame"
        elif state == "connecting":
            limit, since, what = self._open_timeout_s, self.state_since, "opening did not return"
        else:
            return None
        if now - since < limit:
            return None
        with self._gen_lock:
            if self.state != state or self._stop.is_set():
                return None
            if self.blocked:  # the previous frozen reader still has not returned: do not pile up threads
                return None
            reason = f"source frozen: {what} for {now - since:.1f} s"
            self._generation += 1
            self._abandoned = self._thread
            self.stalls += 1
            self.errors += 1
            self._failing = True
            self.last_error = reason
            logger.warning(
                "camera %s: %s: %s; reconnecting (the blocked call is left to return on its own)",
                self.name,
                self.description,
                reason,
            )
            self._spawn()
        return reason

    def _current(self, gen: int) -> bool:
        return gen == self._generation

    def _set_state(self, state: CaptureState, gen: int) -> None:
        if gen == self._generation and self.state != state:
            self.state = state
            self.state_since = self._clock()

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

    def _run(self, gen: int) -> None:
        try:
            while not self._stop.is_set() and self._current(gen):
                if self._session(gen):
                    if self._current(gen):
                        self.finished = True
                    break
        except BaseException:  # a bug here must not take the process down; say so loudly
            logger.exception("camera %s: capture thread crashed", self.name)
            if self._current(gen):
                self.last_error = "capture thread crashed (see the log)"
        finally:
            if self._current(gen):
                self.state = "stopped"
                self.state_since = self._clock()

    def _session(self, gen: int) -> bool:
        """One reader from open to close. True when the source ended for good (no loop)."""
        self._set_state("connecting", gen)
        reader: FrameReader | None = None
        try:
            reader = self._reader_factory(self.camera)
            reader.open()
            if not self._current(gen):  # abandoned while opening: the new thread has the camera
                return False
            self.description = reader.describe()
            if self._failing:
                self.reconnects += 1
                logger.info(
                    "camera %s: %s reopened after %d errors", self.name, self.description, self.errors
                )
            else:
                logger.info("camera %s: capturing from %s", self.name, self.description)
            self._failing = False
            self._set_state("running", gen)
            return self._stream(reader, gen)
        except SourceError as exc:
            reason = str(exc)
        except Exception as exc:
            logger.debug("camera %s: unexpected error", self.name, exc_info=True)
            reason = f"unexpected {type(exc).__name__}: {exc}"
        finally:
            if reader is not None:
                self._close(reader)
        if self._current(gen):
            self._fail(redact_url(reason), gen)
        return False

    def _fail(self, reason: str, gen: int) -> None:
        self.errors += 1
        self._failing = True
        self.last_error = reason
        delay = self._backoff.next_delay()
        if self._stop.is_set():
            return
        self._set_state("backoff", gen)
        where = "" if reason.startswith(self.description) else f"{self.description}: "
        logger.warning("camera %s: %s%s; retrying in %.2f s", self.name, where, reason, delay)
        self._stop.wait(delay)

    def _close(self, reader: FrameReader) -> None:
        try:
            reader.close()
        except Exception:
            logger.warning("camera %s: closing %s failed", self.name, self.description, exc_info=True)

    def _stream(self, reader: FrameReader, gen: int) -> bool:
        frames = 0  # since the last open
        last_fps: float | None = None
        next_due: float | None = None
        while not self._stop.is_set() and self._current(gen):
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
            if not self._current(gen):  # the watchdog gave up on this read: deliver nothing, end
                return False
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
            self._emit(image, now, frames - 1, gen)
            if period is None and not reader.live:
                self._wake.wait(self._demand_timeout_s)
        return False

    def _emit(self, image: np.ndarray, now: float, index: int, gen: int) -> None:
        with self._gen_lock:  # the watchdog cannot abandon this thread half-way through a frame
            if not self._current(gen):
                return
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
