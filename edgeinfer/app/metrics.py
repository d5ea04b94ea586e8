"""The daemon's Prometheus metrics, on a registry of its own, plus rolling windows for percentiles.

The registry also carries the ``process_*`` metrics of this process (memory, CPU, open fds) and no
``*_created`` series: prometheus-client's switch for those is process-wide, set when a registry is built here.

:class:`Metrics` is the pipeline's :class:`~edgeinfer.pipeline.types.PipelineObserver`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)

from edgeinfer.app.stats import FpsWindow, Stats, Window
from edgeinfer.pipeline.types import DropReason, PipelineStatus, Stage, StageTimes

__all__ = ["STAGES", "Metrics", "Window"]

STAGES = tuple(stage.value for stage in Stage)
_LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None, window_size: int = 2048) -> None:
        # A ``_created`` sample per counter and histogram child would double the output for a timestamp
        # nobody graphs; the switch is global in prometheus-client (checked when a registry is collected).
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry or CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)
        self.frames_captured = Counter(
            "edgeinfer_frames_captured", "Frames read from a camera", ["camera"], registry=r
        )
        self.frames_processed = Counter(
            "edgeinfer_frames_processed", "Frames through the detector", ["camera"], registry=r
        )
        self.frames_dropped = Counter(
            "edgeinfer_frames_dropped",
            "Frames dropped: superseded by a newer frame before batching, or stale when the batch formed",
            ["camera", "reason"],
            registry=r,
        )
        self.events = Counter(
            "edgeinfer_events", "Detection events written to the store", ["camera"], registry=r
        )
        self.batch_size = Histogram(
            "edgeinfer_batch_size",
            "Frames per inference batch",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64),
            registry=r,
        )
        self.latency = Histogram(
            "edgeinfer_stage_latency_seconds",
            "Latency per pipeline stage",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.store_bytes = Gauge("edgeinfer_store_bytes", "Size of the local store", registry=r)
        self.store_pruned = Counter(
            "edgeinfer_store_pruned_rows",
            "Rows removed by retention or the size cap",
            ["undelivered"],
            registry=r,
        )
        self.errors = Counter("edgeinfer_errors", "Errors by component", ["component"], registry=r)
        self.camera_up = Gauge(
            "edgeinfer_camera_up", "1 while a camera delivers frames", ["camera"], registry=r
        )
        self.outcomes_lost = Counter(
            "edgeinfer_outcomes_lost",
            "Processed frames whose outcome (event, points) never reached the store: buffer_full while the"
            " store was failing, shutdown when the drain deadline passed",
            ["reason"],
            registry=r,
        )
        self.store_failing = Gauge(
            "edgeinfer_store_failing", "1 while commits to the local store fail", registry=r
        )
        self.drain_unfinished = Counter(
            "edgeinfer_drain_unfinished",
            "What the shutdown drain could not finish by its deadline (outcomes, outputs)",
            ["what"],
            registry=r,
        )
        self.windows = {stage: Window(window_size) for stage in STAGES}
        self.batch_window = Window(512)
        self.fps: dict[str, FpsWindow] = {}
        self.camera_e2e: dict[str, Window] = {}  # per camera, for the live page (the stats are overall)
        self._children: dict[tuple[Any, ...], Any] = {}  # (id(metric), *labels) -> child
        self._stage_latency = {stage: self.latency.labels(stage.value) for stage in Stage}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # ------------------------------------------------------------------ PipelineObserver

    def bind(self, cameras: Sequence[str]) -> None:
        """Every camera's series exist (at 0) from the start."""
        for camera in cameras:
            self._child(self.frames_captured, camera)
            self._child(self.frames_processed, camera)
            self._child(self.frames_dropped, camera, "superseded")
            self._child(self.frames_dropped, camera, "stale")
            self._child(self.events, camera)
            self.fps.setdefault(camera, FpsWindow())
            self.camera_e2e.setdefault(camera, Window(256))

    def frame_captured(self, camera: str) -> None:
        self._child(self.frames_captured, camera).inc()

    def frame_dropped(self, camera: str, reason: DropReason) -> None:
        self._child(self.frames_dropped, camera, reason).inc()

    def frame_done(self, camera: str, times: StageTimes, event: bool, done: float) -> None:
        self._child(self.frames_processed, camera).inc()
        if event:
            self._child(self.events, camera).inc()
        for stage, ms in times.items():
            self._stage_latency[stage].observe(ms / 1e3)
            self.windows[stage].add(ms)
        fps = self.fps.get(camera)
        if fps is None:
            fps = self.fps[camera] = FpsWindow()
        fps.add(done)
        e2e = self.camera_e2e.get(camera)
        if e2e is None:
            e2e = self.camera_e2e[camera] = Window(256)
        e2e.add(times.e2e)

    def batch_done(self, size: int) -> None:
        self.batch_size.observe(size)
        self.batch_window.add(size)

    # ------------------------------------------------------------------ stats

    def stats(self, status: PipelineStatus) -> Stats:
        """The stats snapshot: the pipeline's counters and these windows."""
        return Stats.collect(status, self.windows, self.batch_window, self.fps)
