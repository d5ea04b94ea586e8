"""Dynamic batching across cameras that share a detector.

Each camera holds at most one pending frame (its latest); a newer frame replaces an older one, which is
counted as superseded. A batch is dispatched when

- it is full (``max_batch_size`` cameras have a frame), or
- every *active* camera already has a frame in it (a lone camera never waits), or
- ``max_delay`` has passed since its oldest frame arrived.

A camera is active while it delivers at its own recent pace; one that pauses (keyframes, network) stops
counting after about two of its frame intervals, so it never holds the others back for more than
``max_delay``. Frames older than ``max_staleness`` when the batch forms are dropped and counted.

When more cameras have frames than fit, stride scheduling picks who goes: each camera has a *pass*
that advances by 1/priority each time it is served; the lowest pass goes first. Shares are proportional
to priority and nobody starves. One pending frame per camera also means a fast camera cannot fill a
batch on its own.

The policy (:meth:`Batcher.take`) is synchronous and driven by an injectable clock, so tests are
deterministic; :meth:`Batcher.next_batch` is the asyncio wrapper the pipeline awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from edgeinfer.sources.frame import Frame

MIN_ACTIVE_WINDOW_S = 0.005
MAX_ACTIVE_WINDOW_S = 1.0
CLOCK_SLACK_S = 1e-6  # timers may fire a hair early; don't spin for a microsecond


@dataclass(slots=True)
class _Lane:
    priority: float
    pending: Frame | None = None
    arrived: float = 0.0  # batcher clock when the pending frame arrived
    last_arrival: float = -math.inf
    interval: float | None = None  # EWMA of inter-arrival times
    pass_: float = 0.0
    superseded: int = 0
    stale: int = 0
    served: int = 0

    def active(self, now: float) -> bool:
        window = MAX_ACTIVE_WINDOW_S if self.interval is None else 2.0 * self.interval + MIN_ACTIVE_WINDOW_S
        return now - self.last_arrival <= min(window, MAX_ACTIVE_WINDOW_S)


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    max_batch_size: int = 4
    max_delay_s: float = 0.010
    max_staleness_s: float = 0.5


@dataclass
class Batcher:
    priorities: Mapping[str, float]
    policy: BatchPolicy = field(default_factory=BatchPolicy)
    clock: Callable[[], float] = time.monotonic
    on_stale: Callable[[Frame], None] | None = None

    def __post_init__(self) -> None:
        self._lanes = {name: _Lane(priority) for name, priority in self.priorities.items()}
        self._wakeup = asyncio.Event()
        self._closed = False

    # ------------------------------------------------------------------ intake

    def put(self, frame: Frame) -> Frame | None:
        """Offer a camera's newest frame; returns the frame it superseded (dropped), if any."""
        lane = self._lanes[frame.camera]
        now = self.clock()
        if lane.last_arrival > -math.inf:
            gap = now - lane.last_arrival
            lane.interval = gap if lane.interval is None else 0.8 * lane.interval + 0.2 * gap
        lane.last_arrival = now
        replaced = lane.pending
        if replaced is not None:
            lane.superseded += 1
        lane.pending, lane.arrived = frame, now
        self._wakeup.set()
        return replaced

    # ------------------------------------------------------------------ policy

    def take(self, now: float) -> list[Frame] | float:
        """A batch to dispatch now, or the clock time at which to look again (inf: wait for a frame)."""
        self._drop_stale(now)
        ready = [(name, lane) for name, lane in self._lanes.items() if lane.pending is not None]
        if not ready:
            return math.inf
        oldest = min(lane.arrived for _, lane in ready)
        deadline = oldest + self.policy.max_delay_s
        full = len(ready) >= self.policy.max_batch_size
        everyone_in = all(lane.pending is not None for lane in self._lanes.values() if lane.active(now))
        if not (full or everyone_in or now >= deadline - CLOCK_SLACK_S):
            return deadline
        # Stride scheduling: a camera back from idle joins at the current virtual time, so it gets
        # its fair share from now on rather than a burst to make up for the past.
        virtual_time = min(lane.pass_ for _, lane in ready)
        for _, lane in ready:
            lane.pass_ = max(lane.pass_, virtual_time)
        ready.sort(key=lambda item: (item[1].pass_, item[1].arrived))
        batch = []
        for _, lane in ready[: self.policy.max_batch_size]:
            assert lane.pending is not None
            batch.append(lane.pending)
            lane.pending = None
            lane.pass_ += 1.0 / lane.priority
            lane.served += 1
        return batch

    def _drop_stale(self, now: float) -> None:
        for lane in self._lanes.values():
            frame = lane.pending
            if frame is not None and now - frame.mono > self.policy.max_staleness_s:
                lane.pending = None
                lane.stale += 1
                if self.on_stale is not None:
                    self.on_stale(frame)

    # ------------------------------------------------------------------ asyncio

    def close(self) -> None:
        """Make :meth:`next_batch` return an empty batch (shutdown)."""
        self._closed = True
        self._wakeup.set()

    async def next_batch(self) -> list[Frame]:
        """The next batch to run; an empty list once the batcher is closed."""
        while not self._closed:
            now = self.clock()
            result = self.take(now)
            if isinstance(result, list):
                return result
            self._wakeup.clear()
            timeout = None if math.isinf(result) else max(0.0, result - now)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)
        return []

    # ------------------------------------------------------------------ stats

    def counters(self) -> dict[str, dict[str, int]]:
        return {
            name: {"superseded": lane.superseded, "stale": lane.stale, "served": lane.served}
            for name, lane in self._lanes.items()
        }

    def pending_count(self) -> int:
        return sum(lane.pending is not None for lane in self._lanes.values())
