"""The daemon's Prometheus metrics, on a registry of its own, plus rolling windows for percentiles."""

from __future__ import annotations

from collections import deque

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

STAGES = ("queue", "preprocess", "inference", "postprocess", "output", "e2e")
_LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


class Window:
    """The last ``size`` samples, for percentiles in status lines and stats messages."""

    def __init__(self, size: int = 2048) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, value: float) -> None:
        self._values.append(value)

    def clear(self) -> None:
        self._values.clear()

    def values(self) -> np.ndarray:
        return np.fromiter(self._values, float)

    def percentiles(self, qs: tuple[float, ...] = (50, 99)) -> list[float] | None:
        if not self._values:
            return None
        return [float(v) for v in np.percentile(np.fromiter(self._values, float), qs)]

    def mean(self) -> float | None:
        return float(np.mean(np.fromiter(self._values, float))) if self._values else None


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None, window_size: int = 2048) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
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
