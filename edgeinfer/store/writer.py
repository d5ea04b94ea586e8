"""The store writer: commits pipeline outcomes to the local store in batched transactions.

While one transaction commits (on the store's thread), outcomes queue up; the next transaction takes all
of them, so batches grow with load without adding latency when idle.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from edgeinfer.app.metrics import Metrics
from edgeinfer.pipeline.outcomes import Outcome
from edgeinfer.store.sqlite import AsyncStore, EventRow

logger = logging.getLogger(__name__)


class StoreWriter:
    def __init__(self, store: AsyncStore, metrics: Metrics, *, max_items: int = 2000) -> None:
        self._store, self._metrics = store, metrics
        # Bounded: if the disk stalls, the pipeline waits here and cameras drop frames at the source.
        self._queue: asyncio.Queue[list[Outcome] | None] = asyncio.Queue(maxsize=max_items)
        self._output = metrics.latency.labels("output")
        self.events_written = 0
        self.points_written = 0
        self.on_commit: list[Callable[[], None]] = []  # e.g. wake the MQTT publisher

    async def submit(self, outcomes: list[Outcome]) -> None:
        await self._queue.put(outcomes)

    async def close(self) -> None:
        """Flush what was submitted, then make :meth:`run` return."""
        await self._queue.put(None)

    async def run(self) -> None:
        done = False
        while not done:
            item = await self._queue.get()
            batch = [] if item is None else [item]
            done = item is None
            while not done and not self._queue.empty():
                more = self._queue.get_nowait()
                done = more is None
                if more is not None:
                    batch.append(more)
            events: list[EventRow] = [o.event for group in batch for o in group if o.event is not None]
            points = [p for group in batch for o in group for p in o.points]
            if not events and not points:
                continue
            start = time.perf_counter()
            try:
                await self._store.run(self._store.store.append, events, points)
            except Exception:
                # A full disk or a broken database: say so and keep the daemon alive; the next
                # transaction retries with what comes next.
                self._metrics.errors.labels("store").inc()
                logger.exception("local store: could not commit %d events", len(events))
                continue
            elapsed = time.perf_counter() - start
            self._output.observe(elapsed)
            self._metrics.windows["output"].add(elapsed * 1e3)
            self.events_written += len(events)
            self.points_written += len(points)
            for notify in self.on_commit:
                notify()
