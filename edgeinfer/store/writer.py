"""The store writer: commits pipeline outcomes to the local store in batched transactions.

While one transaction commits (on the store's thread), outcomes queue up; the next transaction takes all
of them (up to ``max_commit``), so batches grow with load without adding latency when idle.

A transaction that fails (disk full, a broken database) is never dropped silently: its outcomes stay in
memory and are retried with backoff, together with what arrives meanwhile. That memory is bounded
(``max_held`` outcomes); past it the oldest outcomes are given up and counted. The failure is logged once
when it starts, as a reminder every minute while it lasts, and once when the store recovers.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable

from edgeinfer.aio import Backoff, wait_any
from edgeinfer.app.metrics import Metrics
from edgeinfer.pipeline.outcomes import Outcome
from edgeinfer.store.sqlite import AsyncStore, EventRow

logger = logging.getLogger(__name__)

REMINDER_S = 60.0


class StoreWriter:
    def __init__(
        self,
        store: AsyncStore,
        metrics: Metrics,
        *,
        max_items: int = 2000,
        max_held: int = 20_000,
        max_commit: int = 500,
        retry: tuple[float, float] = (0.2, 5.0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store, self._metrics, self._clock = store, metrics, clock
        # Bounded: if the disk stalls, the pipeline waits here and cameras drop frames at the source.
        self._queue: asyncio.Queue[list[Outcome]] = asyncio.Queue(maxsize=max_items)
        self._held: deque[Outcome] = deque()  # taken from the queue, not yet committed
        self._max_held = max_held
        # At most this many outcomes per transaction: after a long failure the held backlog goes in
        # bounded transactions (a single one of 20,000 could never fit in a nearly full disk's WAL).
        self._max_commit = max_commit
        self._backoff = Backoff(*retry)
        self._closing = asyncio.Event()
        self._given_up = asyncio.Event()  # close() passed its deadline: run() returns
        self._queued = asyncio.Event()
        self._in_queue = 0  # outcomes in the queue's groups
        self._failing_since: float | None = None
        self._last_reminder = 0.0
        self._output = metrics.latency.labels("output")
        self.events_written = 0
        self.on_commit: list[Callable[[], None]] = []  # e.g. wake the MQTT publisher

    @property
    def failing(self) -> bool:
        """True while commits fail (outcomes are held in memory)."""
        return self._failing_since is not None

    def unstored(self) -> int:
        """Outcomes submitted but not committed yet."""
        return len(self._held) + self._in_queue

    async def submit(self, outcomes: list[Outcome]) -> None:
        await self._queue.put(outcomes)
        self._in_queue += len(outcomes)
        self._queued.set()

    async def close(self, deadline_s: float, *, abandon: asyncio.Event | None = None) -> int:
        """Commit what was submitted within ``deadline_s`` seconds (less if ``abandon`` is set meanwhile), then
        make :meth:`run` return. Returns the number of outcomes that could not be stored in time (counted
        as ``edgeinfer_outcomes_lost{reason="shutdown"}`` and logged once; a commit still running on the
        store thread at the deadline is counted too, since nobody can wait for it any longer)."""
        self._closing.set()
        self._queued.set()
        events = (abandon,) if abandon is not None else ()
        deadline = self._clock() + deadline_s
        while self.unstored() and self._clock() < deadline and not (abandon and abandon.is_set()):
            await wait_any(*events, within=min(0.05, max(0.0, deadline - self._clock())))
        left = self.unstored()
        if left:
            self._given_up.set()
            self._metrics.outcomes_lost.labels("shutdown").inc(left)
            logger.error(
                "local store: %d outcome(s) not stored before shutdown (%s)",
                left,
                "exit forced" if abandon and abandon.is_set() else f"store failing for {deadline_s:.0f} s",
            )
        return left

    async def run(self) -> None:
        """Commit until :meth:`close` was called and nothing is left, or close() gave up at its deadline."""
        while not self._given_up.is_set():
            self._take_queued()
            if not self._held:
                if self._closing.is_set():
                    return
                self._queued.clear()
                if self._queue.empty():
                    await self._queued.wait()
                continue
            if not await self._commit():
                # Before close(): a close wakes the retry at once; after it, only giving up does.
                wake = self._given_up if self._closing.is_set() else self._closing
                await wait_any(wake, within=self._backoff.next_delay())

    def _take_queued(self) -> None:
        while not self._queue.empty():
            group = self._queue.get_nowait()
            self._in_queue -= len(group)
            self._held.extend(group)
        over = len(self._held) - self._max_held
        if over > 0:
            for _ in range(over):
                self._held.popleft()
            self._metrics.outcomes_lost.labels("buffer_full").inc(over)
            logger.error("local store: memory buffer full, %d oldest outcome(s) given up", over)

    async def _commit(self) -> bool:
        batch = list(itertools.islice(self._held, self._max_commit))
        events: list[EventRow] = [o.event for o in batch if o.event is not None]
        points = [p for o in batch for p in o.points]
        messages = [m for o in batch for m in o.messages]
        start = time.perf_counter()
        try:
            await self._store.run(self._store.store.append, events, points, messages)
        except Exception as exc:  # StoreError from the store; anything else is a failure all the same
            self._metrics.errors.labels("store").inc()
            self._on_failure(exc, len(batch))
            return False
        for _ in range(len(batch)):
            self._held.popleft()
        elapsed = time.perf_counter() - start
        self._output.observe(elapsed)
        self._metrics.windows["output"].add(elapsed * 1e3)
        self.events_written += len(events)
        if self._failing_since is not None:
            logger.warning(
                "local store: recovered after %.0f s; committed %d held outcome(s)",
                self._clock() - self._failing_since,
                len(batch),
            )
            self._failing_since = None
            self._metrics.store_failing.set(0)
        self._backoff.reset()
        for notify in self.on_commit:
            notify()
        return True

    def _on_failure(self, exc: Exception, held: int) -> None:
        now = self._clock()
        if self._failing_since is None:
            self._failing_since = self._last_reminder = now
            self._metrics.store_failing.set(1)
            logger.error(
                "local store: cannot commit (%s); holding %d outcome(s) in memory and retrying", exc, held
            )
        elif now - self._last_reminder >= REMINDER_S:
            self._last_reminder = now
            logger.error(
                "local store: still failing after %.0f s (%s); %d outcome(s) held",
                now - self._failing_since,
                exc,
                held,
            )
