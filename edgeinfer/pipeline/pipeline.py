"""The pipeline: camera threads -> batcher -> stages (prepare, infer, finish) -> outcomes to a sink.

This module only wires the parts and keeps the counts: :mod:`~edgeinfer.pipeline.cameras` owns the
capture threads, :mod:`~edgeinfer.pipeline.batcher` forms batches, :mod:`~edgeinfer.pipeline.stages`
runs them through the detector and builds the outcomes off the event loop, and
:mod:`~edgeinfer.pipeline.outcomes` holds the filters and event policies. Only capture threads and the
stages' two executor threads do blocking work; the event loop only routes. Backpressure is by dropping
at the source (latest frame wins), never by growing queues.

What the pipeline reports goes to a :class:`~edgeinfer.pipeline.types.PipelineObserver` (the daemon's
metrics); :meth:`Pipeline.status` gives its own counters. ``on_result`` (the live view's hub) is handed
each processed frame and its detections as references: no copy, no encode on this path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from edgeinfer.config import Config
from edgeinfer.pipeline.batcher import Batcher, BatchPolicy
from edgeinfer.pipeline.cameras import Cameras
from edgeinfer.pipeline.outcomes import OutcomeBuilder
from edgeinfer.pipeline.stages import Finished, Stages
from edgeinfer.pipeline.types import (
    ContextLookup,
    DetectorLike,
    FrameResultHook,
    NullObserver,
    Outcome,
    PipelineObserver,
    PipelineStatus,
)
from edgeinfer.sources.capture import STALL_S, Capture
from edgeinfer.sources.factory import open_reader
from edgeinfer.sources.frame import Frame
from edgeinfer.tracking.snapshots import SnapshotStore

logger = logging.getLogger(__name__)

OutcomeSink = Callable[[list[Outcome]], Awaitable[None]]
MAX_FAILED_BATCHES = 5  # this many batches in a row raising in the detector: /healthz goes red
STARTUP_GRACE_S = 60.0  # /healthz is green this long after start before the first batch


class Pipeline:
    def __init__(
        self,
        config: Config,
        detector: DetectorLike[Any],
        observer: PipelineObserver | None,
        sink: OutcomeSink,
        *,
        context: ContextLookup | None = None,
        reader_factory: Callable[..., Any] = open_reader,
        clock: Callable[[], float] = time.monotonic,
        max_frames: int | None = None,
        poll_s: float = 0.5,
        seq_start: Mapping[str, int] | None = None,
        max_failed_batches: int = MAX_FAILED_BATCHES,
        stall_s: float = STALL_S,
        instances: Sequence[DetectorLike[Any]] | None = None,
        max_batch_size: int | None = None,
        on_result: FrameResultHook | None = None,
        track_prefix: str | None = None,
        snapshots: SnapshotStore | None = None,
        nice: int = 0,
    ) -> None:
        """``instances``: the detector's runtime instances (default: the detector alone);
        ``max_batch_size``: a lower batch cap than the config's (the detector tuning's choice); ``nice``:
        how much nicer the instances' threads run (the daemon's :func:`~edgeinfer.pipeline.priority.instance_nice`)."""
        self.config, self.detector = config, detector
        self.observer: PipelineObserver = observer or NullObserver()
        self._sink, self._clock = sink, clock
        self._on_result = on_result
        self.max_frames, self._poll_s = max_frames, poll_s
        batching = config.batching
        self.batcher = Batcher(
            {c.name: c.priority for c in config.cameras},
            BatchPolicy(
                min(batching.max_batch_size, max_batch_size or batching.max_batch_size),
                batching.max_delay_ms / 1e3,
                batching.max_staleness_ms / 1e3,
            ),
            clock=clock,
            on_stale=self._on_stale,
        )
        # seq_start: per camera, the first frame seq (the daemon passes Store.next_seqs(), so event
        # identities (device, camera, seq) never repeat across restarts).
        self.cameras = Cameras(
            config.cameras, reader_factory=reader_factory, clock=clock, seq_start=seq_start, stall_s=stall_s
        )
        builder = OutcomeBuilder(
            config.cameras,
            device=config.device,
            labels=detector.labels,
            model=detector.info.name,
            context=context,
            conf=config.detector.conf,
            track_prefix=track_prefix,  # the daemon passes Store.next_boot(): track ids never repeat
            snapshots=snapshots,
        )
        self.builder = builder
        self.stages = Stages(detector, builder, instances=instances, clock=clock, nice=nice)
        self.processed: dict[str, int] = {c.name: 0 for c in config.cameras}
        self.frames_total = 0
        self.batches = 0
        self.started = clock()
        self.last_progress = self.started
        self.first_event_s: float | None = None
        self.max_failed_batches = max_failed_batches
        self.failed_in_a_row = 0  # batches the detector raised on since the last good one
        self.failed_batches = 0
        self.detector_drops: dict[str, int] = {c.name: 0 for c in config.cameras}
        self.last_detector_error: str | None = None
        self._stop = asyncio.Event()
        self.observer.bind([c.name for c in config.cameras])

    @property
    def captures(self) -> dict[str, Capture]:
        return self.cameras.captures

    # ------------------------------------------------------------------ frames in (event loop)

    def _on_frame(self, frame: Frame) -> None:
        self.observer.frame_captured(frame.camera)
        if self.batcher.put(frame) is not None:
            self.observer.frame_dropped(frame.camera, "superseded")

    def _on_stale(self, frame: Frame) -> None:
        self.observer.frame_dropped(frame.camera, "stale")

    def trigger(self, camera: str, fps: float, for_s: float) -> None:
        """A sensor rule raises a camera's rate for a while (called on the event loop)."""
        self.cameras.trigger(camera, fps, for_s)

    # ------------------------------------------------------------------ run

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set (or max_frames, or every source finished); then drain in-flight work."""
        loop = asyncio.get_running_loop()

        def deliver(frame: Frame) -> None:  # on a capture thread
            loop.call_soon_threadsafe(self._on_frame, frame)

        self.cameras.start(deliver)
        watcher = asyncio.create_task(self._watch(stop), name="edgeinfer.pipeline.pipeline.watch")
        try:
            await self.stages.run(
                self.batcher.next_batch,
                self._deliver,
                taken=self.cameras.taken,
                stop=self._stop,
                max_frames=self.max_frames,
            )
        finally:
            watcher.cancel()
            await self.cameras.stop(2.0)

    async def _watch(self, stop: asyncio.Event) -> None:
        """Turn the outside stop (or all sources finished) into the pipeline's own stop; run the cameras'
        frame watchdog every ``poll_s``."""
        while not stop.is_set() and not self._stop.is_set():
            self.cameras.watchdog()
            if self.cameras.all_finished() and not self.batcher.pending_count():
                logger.info("every source has ended")
                break
            try:
                await asyncio.wait_for(stop.wait(), self._poll_s)
            except TimeoutError:
                continue
        self._halt()

    def _halt(self) -> None:
        self._stop.set()
        self.batcher.close()

    async def _deliver(self, finished: Finished) -> None:
        """On the loop: count a finished job, report it, hand its outcomes to the sink."""
        if finished.error is not None:
            self._failed(finished)
            return
        if self.failed_in_a_row:
            logger.warning(
                "detector: recovered after %d failed batch(es) in a row (%d frames dropped so far)",
                self.failed_in_a_row,
                sum(self.detector_drops.values()),
            )
            self.failed_in_a_row = 0
        done, size = finished.done, len(finished.frames)
        for frame, outcome, times in zip(finished.frames, finished.outcomes, finished.times, strict=True):
            self.processed[frame.camera] += 1
            event = outcome.event is not None
            self.observer.frame_done(frame.camera, times, event, done)
            if self._on_result is not None and outcome.detections is not None:
                self._on_result(frame, outcome.detections)
            if event and self.first_event_s is None:
                self.first_event_s = done - self.started
        self.frames_total += size
        self.batches += 1
        self.observer.batch_done(size)
        self.last_progress = done
        await self._sink(list(finished.outcomes))

    def _failed(self, finished: Finished) -> None:
        """The detector raised on this batch: its frames are dropped and counted; the pipeline goes on."""
        error = finished.error
        assert error is not None
        for frame in finished.frames:
            self.detector_drops[frame.camera] = self.detector_drops.get(frame.camera, 0) + 1
            self.observer.frame_dropped(frame.camera, "detector_error")
        self.failed_batches += 1
        self.failed_in_a_row += 1
        self.last_detector_error = f"{type(error).__name__}: {error}"
        if self.failed_in_a_row == 1:
            logger.error(
                "detector: a batch of %d frame(s) failed, dropped (%s); going on with the next",
                len(finished.frames),
                self.last_detector_error,
                exc_info=error,
            )
        elif self.failed_in_a_row == self.max_failed_batches:
            logger.error(
                "detector: %d batches in a row failed (last: %s); /healthz reports unhealthy",
                self.failed_in_a_row,
                self.last_detector_error,
            )

    # ------------------------------------------------------------------ status

    def status(self) -> PipelineStatus:
        """The pipeline's own counters now (the daemon's stats add its metrics' windows)."""
        now = self._clock()
        return PipelineStatus(
            mono=now,
            uptime_s=now - self.started,
            frames=dict(self.processed),
            drops={
                name: c["superseded"] + c["stale"] + self.detector_drops.get(name, 0)
                for name, c in self.batcher.counters().items()
            },
            cameras_up=self.cameras.up(),
        )

    def healthy(self, max_idle_s: float = 30.0, grace_s: float = STARTUP_GRACE_S) -> tuple[bool, str]:
        """/healthz: batches keep coming (within ``max_idle_s``) and the detector does not fail batch after
        batch. Before the first batch: healthy for ``grace_s`` after start (cameras may take a while to
        open), unhealthy after that."""
        if self.failed_in_a_row >= self.max_failed_batches:
            return False, (
                f"detector failing: {self.failed_in_a_row} batches in a row raised"
                f" (last: {self.last_detector_error})"
            )
        now = self._clock()
        if not self.batches:
            waited = now - self.started
            if waited < grace_s:
                return True, f"waiting for the first frame ({waited:.1f} s since start)"
            return False, f"no frame processed in the {waited:.1f} s since start"
        idle = now - self.last_progress
        return (idle < max_idle_s, f"last batch {idle:.1f} s ago")

    def ready(self, max_age_s: float = 5.0) -> tuple[bool, str]:
        """/readyz: ready while at least one camera delivers. Names every camera by its state:
        ``delivering: a, b; starting: c (...); retrying: d (last error); down: e (why)``."""
        health = self.cameras.health(max_age_s)
        live = [h.name for h in health if h.state == "up"]
        text = f"model {self.detector.info.name} loaded; delivering: {', '.join(live) or 'none'}"
        for state in ("starting", "retrying", "down"):
            group = [h.describe() for h in health if h.state == state]
            if group:
                text += f"; {state}: " + ", ".join(group)
        return bool(live), text
