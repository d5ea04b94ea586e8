"""The pipeline: camera threads -> batcher -> prepare -> infer -> decode/filter/events -> outcomes.

Three stages run concurrently, linked by small bounded queues, so the next batch is preprocessed while
the current one is in the runtime and the previous one is being decoded:

    prepare (cpu thread)  --q(1)-->  infer (the detector's own thread)  --q(2)-->  finish (cpu thread + loop)

Only capture threads and these two executor threads do blocking work; the event loop only routes.
Backpressure is by dropping at the source (latest frame wins), never by growing queues.

A single frame that finds the runtime idle (a camera at its own pace, not a backlog) skips the hand-offs:
prepare, infer and decode run in one call on the infer thread, since each hop costs more than the
work it would overlap (~0.5 ms against 0.1-0.3 ms of prepare or decode for one frame).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeinfer.app.metrics import Metrics
from edgeinfer.config import Config
from edgeinfer.detect.detections import Detections
from edgeinfer.detect.detector import Detector, Prepared
from edgeinfer.pipeline.batcher import Batcher, BatchPolicy
from edgeinfer.pipeline.outcomes import CameraFilter, EventPolicy, Outcome, build_outcome, labels_of
from edgeinfer.sources.capture import Capture
from edgeinfer.sources.factory import open_reader
from edgeinfer.sources.frame import Frame

logger = logging.getLogger(__name__)

OutcomeSink = Callable[[list[Outcome]], Awaitable[None]]
ContextLookup = Callable[[list[str]], dict[str, Any]]


@dataclass(slots=True)
class _Job:
    frames: list[Frame]
    prepared: Prepared | None  # None: the infer thread prepares it (single frame, idle runtime)
    dispatched: float
    prep_s: float = 0.0
    infer_s: float = 0.0
    results: list[Detections] | None = None  # already decoded on the infer thread
    decode_s: float = 0.0


class Pipeline:
    def __init__(
        self,
        config: Config,
        detector: Detector,
        metrics: Metrics,
        sink: OutcomeSink,
        *,
        context: ContextLookup | None = None,
        reader_factory: Callable[..., Any] = open_reader,
        clock: Callable[[], float] = time.monotonic,
        max_frames: int | None = None,
    ) -> None:
        self.config, self.detector, self.metrics = config, detector, metrics
        self._sink, self._context, self._clock = sink, context, clock
        self._reader_factory = reader_factory
        self.max_frames = max_frames
        batching = config.batching
        self.batcher = Batcher(
            {c.name: c.priority for c in config.cameras},
            BatchPolicy(
                batching.max_batch_size, batching.max_delay_ms / 1e3, batching.max_staleness_ms / 1e3
            ),
            clock=clock,
            on_stale=self._on_stale,
        )
        labels = detector.labels
        self._filters = {c.name: CameraFilter(c, labels) for c in config.cameras}
        self._policies = {c.name: EventPolicy(c.events) for c in config.cameras}
        self._context_series = {c.name: list(c.context) for c in config.cameras}
        self.captures: dict[str, Capture] = {}
        self.processed: dict[str, int] = {c.name: 0 for c in config.cameras}
        self._recent: dict[str, deque[float]] = {c.name: deque(maxlen=256) for c in config.cameras}
        self.frames_total = 0
        self.batches = 0
        self.started = clock()
        self.last_progress = self.started
        self.first_event_s: float | None = None
        self._cpu = ThreadPoolExecutor(1, thread_name_prefix="edgeinfer.cpu")
        self._infer = ThreadPoolExecutor(1, thread_name_prefix="edgeinfer.infer")
        self._infer_busy = False
        self._stop = asyncio.Event()
        m = metrics
        self._m_captured = {c.name: m.frames_captured.labels(c.name) for c in config.cameras}
        self._m_processed = {c.name: m.frames_processed.labels(c.name) for c in config.cameras}
        self._m_superseded = {c.name: m.frames_dropped.labels(c.name, "superseded") for c in config.cameras}
        self._m_stale = {c.name: m.frames_dropped.labels(c.name, "stale") for c in config.cameras}
        self._m_events = {c.name: m.events.labels(c.name) for c in config.cameras}
        self._m_stage = {
            s: m.latency.labels(s) for s in ("queue", "preprocess", "inference", "postprocess", "e2e")
        }

    # ------------------------------------------------------------------ frames in (event loop)

    def _on_frame(self, frame: Frame) -> None:
        self._m_captured[frame.camera].inc()
        if self.batcher.put(frame) is not None:
            self._m_superseded[frame.camera].inc()

    def _on_stale(self, frame: Frame) -> None:
        self._m_stale[frame.camera].inc()

    def trigger(self, camera: str, fps: float, for_s: float) -> None:
        """A sensor rule raises a camera's rate for a while (called on the event loop)."""
        capture = self.captures.get(camera)
        if capture is not None:
            capture.set_fps(fps, self._clock() + for_s)
            logger.info("trigger: camera %s at %.1f fps for %.0f s", camera, fps, for_s)

    # ------------------------------------------------------------------ run

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set (or max_frames, or every source finished); then drain in-flight work."""
        loop = asyncio.get_running_loop()
        for camera in self.config.cameras:
            capture = Capture(
                camera,
                lambda frame: loop.call_soon_threadsafe(self._on_frame, frame),
                reader_factory=self._reader_factory,
                clock=self._clock,
            )
            self.captures[camera.name] = capture
            capture.start()
        infer_q: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=1)
        finish_q: asyncio.Queue[tuple[_Job, np.ndarray] | None] = asyncio.Queue(maxsize=2)
        watcher = asyncio.create_task(self._watch(stop), name="edgeinfer.pipeline.pipeline.watch")
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._prepare_loop(infer_q), name="edgeinfer.prepare")
                tg.create_task(self._infer_loop(infer_q, finish_q), name="edgeinfer.infer")
                tg.create_task(self._finish_loop(finish_q), name="edgeinfer.finish")
        finally:
            watcher.cancel()
            await asyncio.gather(*(asyncio.to_thread(c.stop, 2.0) for c in self.captures.values()))
            self._cpu.shutdown(wait=False)
            self._infer.shutdown(wait=False)

    async def _watch(self, stop: asyncio.Event) -> None:
        """Turn the outside stop (or all sources finished) into the pipeline's own stop."""
        while not stop.is_set() and not self._stop.is_set():
            if (
                self.captures
                and all(c.finished for c in self.captures.values())
                and not self.batcher.pending_count()
            ):
                logger.info("every source has ended")
                break
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except TimeoutError:
                continue
        self._halt()

    def _halt(self) -> None:
        self._stop.set()
        self.batcher.close()

    async def _prepare_loop(self, infer_q: asyncio.Queue[_Job | None]) -> None:
        loop = asyncio.get_running_loop()
        taken = 0
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and taken >= self.max_frames:
                    break  # --max-frames: take no more; what is in flight still finishes
                frames = await self.batcher.next_batch()
                if not frames:
                    break
                taken += len(frames)
                for frame in frames:
                    self.captures[frame.camera].frame_taken()
                dispatched = self._clock()
                if len(frames) == 1 and not self._infer_busy and infer_q.empty():
                    await infer_q.put(_Job(frames, None, dispatched))
                    continue
                prepared = await loop.run_in_executor(
                    self._cpu, self.detector.prepare, [f.image for f in frames]
                )
                await infer_q.put(_Job(frames, prepared, dispatched, self._clock() - dispatched))
        finally:
            await infer_q.put(None)

    async def _infer_loop(self, infer_q: asyncio.Queue[_Job | None], finish_q: asyncio.Queue[Any]) -> None:
        loop = asyncio.get_running_loop()
        try:
            while (job := await infer_q.get()) is not None:
                self._infer_busy = True
                try:
                    raw = await loop.run_in_executor(self._infer, self._run_job, job)
                finally:
                    self._infer_busy = False
                await finish_q.put((job, raw))
        finally:
            await finish_q.put(None)

    def _run_job(self, job: _Job) -> np.ndarray:
        """On the infer thread: the runtime call, plus prepare and decode for an inline single frame."""
        inline = job.prepared is None
        if inline:
            start = self._clock()
            job.prepared = self.detector.prepare([f.image for f in job.frames])
            job.prep_s = self._clock() - start
        start = self._clock()
        raw = self.detector.infer(job.prepared)
        job.infer_s = self._clock() - start
        if inline:
            start = self._clock()
            job.results = self._decode(raw, job)
            job.decode_s = self._clock() - start
        return raw

    async def _finish_loop(self, finish_q: asyncio.Queue[tuple[_Job, np.ndarray] | None]) -> None:
        loop = asyncio.get_running_loop()
        while (item := await finish_q.get()) is not None:
            job, raw = item
            start = self._clock() - job.decode_s
            if job.results is None:
                job.results = await loop.run_in_executor(self._cpu, self._decode, raw, job)
            outcomes = self._outcomes(job, job.results, start)
            await self._sink(outcomes)

    def _decode(self, raw: np.ndarray, job: _Job) -> list[Detections]:
        assert job.prepared is not None
        decoded = self.detector.decode(raw, job.prepared)
        return [self._filters[f.camera](d) for f, d in zip(job.frames, decoded, strict=True)]

    def _outcomes(self, job: _Job, results: list[Detections], post_start: float) -> list[Outcome]:
        done = self._clock()
        size = len(job.frames)
        labels = self.detector.labels
        model = self.detector.info.name
        outcomes = []
        for frame, dets in zip(job.frames, results, strict=True):
            latency = {
                "queue": (job.dispatched - frame.mono) * 1e3,
                "preprocess": job.prep_s * 1e3,
                "inference": job.infer_s * 1e3,
                "postprocess": (done - post_start) * 1e3,
                "e2e": (done - frame.mono) * 1e3,
            }
            names = labels_of(dets, labels)
            emit = self._policies[frame.camera].should_emit(names, frame.mono)
            series = self._context_series[frame.camera]
            context = self._context(series) if emit and series and self._context else None
            outcome = build_outcome(
                device=self.config.device,
                model=model,
                frame=frame,
                dets=dets,
                labels=labels,
                latency_ms=latency,
                batch_size=size,
                emit=emit,
                context=context,
            )
            outcomes.append(outcome)
            self.processed[frame.camera] += 1
            self._recent[frame.camera].append(done)
            self._m_processed[frame.camera].inc()
            if outcome.event is not None:
                self._m_events[frame.camera].inc()
                if self.first_event_s is None:
                    self.first_event_s = done - self.started
            for stage, value in latency.items():
                self._m_stage[stage].observe(value / 1e3)
                self.metrics.windows[stage].add(value)
        self.frames_total += size
        self.batches += 1
        self.metrics.batch_size.observe(size)
        self.metrics.batch_window.add(size)
        self.last_progress = done
        return outcomes

    # ------------------------------------------------------------------ status

    def fps(self, window_s: float = 5.0) -> dict[str, float]:
        """Processed frames per second per camera over the last few seconds."""
        now = self._clock()
        rates = {}
        for name, times in self._recent.items():
            recent = [t for t in times if now - t <= window_s]
            span = now - recent[0] if len(recent) > 1 else 0.0
            rates[name] = round((len(recent) - 1) / span, 2) if span > 0 else 0.0
        return rates

    def stats(self) -> dict[str, Any]:
        """A snapshot for status lines and the MQTT stats topic (see schemas/stats.schema.json)."""
        counters = self.batcher.counters()
        stages = {}
        for stage, window in self.metrics.windows.items():
            p = window.percentiles((50, 90, 99))
            if p is not None:
                stages[stage] = {"p50": round(p[0], 3), "p90": round(p[1], 3), "p99": round(p[2], 3)}
        return {
            "uptime_s": round(self._clock() - self.started, 1),
            "fps": self.fps(),
            "frames": dict(self.processed),
            "drops": {name: c["superseded"] + c["stale"] for name, c in counters.items()},
            "cameras_up": {name: c.state == "running" for name, c in self.captures.items()},
            "batch_size_mean": round(self.metrics.batch_window.mean() or 0.0, 3),
            "latency_ms": stages.get("e2e", {}),
            "stage_latency_ms": stages,
        }

    def healthy(self, max_idle_s: float = 30.0) -> tuple[bool, str]:
        idle = self._clock() - self.last_progress
        return (idle < max_idle_s, f"last batch {idle:.1f} s ago")

    def ready(self, max_age_s: float = 5.0) -> tuple[bool, str]:
        now = self._clock()
        live = [
            n
            for n, c in self.captures.items()
            if c.last_frame_mono is not None and now - c.last_frame_mono < max_age_s
        ]
        return (
            bool(live),
            f"model {self.detector.info.name} loaded; delivering: {', '.join(live) or 'none'}",
        )
