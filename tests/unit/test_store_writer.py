"""The store writer never drops a batch silently: failed commits are held (bounded), retried and counted.

The store is the real SQLite store; only its ``append`` is made to fail on demand (a disk-full stand-in
at the store seam: filling a real partition is the reliability suite's job).
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from edgeinfer.app.metrics import Metrics
from edgeinfer.errors import StoreError
from edgeinfer.pipeline.outcomes import Outcome
from edgeinfer.store.sqlite import AsyncStore, EventRow, Store
from edgeinfer.store.writer import StoreWriter


class FlakyStore(Store):
    """A real store whose next ``failures`` appends raise StoreError (as a full disk does)."""

    failures = 0
    attempts = 0
    sizes: list[int]

    def append(self, events=(), points=(), messages=()):
        self.attempts += 1
        self.__dict__.setdefault("sizes", []).append(len(events))
        if self.failures:
            self.failures -= 1
            raise StoreError("local store: database or disk is full")
        super().append(events, points, messages)


def outcome(i: int) -> Outcome:
    body = json.dumps({"camera": "a", "seq": i})
    return Outcome(EventRow("a", i, body), [(i, f"inference e2e_ms={i} {i}")])


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def flaky(tmp_path):
    store = FlakyStore(tmp_path / "edgeinfer.db")
    yield store
    store.close()


def test_a_failing_commit_is_retried_until_the_store_recovers(flaky, caplog):
    async def main():
        metrics = Metrics()
        writer = StoreWriter(AsyncStore(flaky), metrics, retry=(0.01, 0.02))
        flaky.failures = 3
        task = asyncio.create_task(writer.run())
        for i in range(10):
            await writer.submit([outcome(i)])
        assert await writer.close(1.0) == 0
        await task
        return metrics, writer

    with caplog.at_level(logging.WARNING, logger="edgeinfer.store.writer"):
        metrics, writer = asyncio.run(main())
    assert not writer.failing
    assert [json.loads(e.body)["seq"] for e in flaky.events()] == list(
        range(10)
    )  # each exactly once, in order
    assert flaky.count("points") == 10
    assert writer.events_written == 10
    assert flaky.attempts >= 4
    assert value(metrics, "edgeinfer_errors_total", component="store") == 3
    assert value(metrics, "edgeinfer_store_failing") == 0
    assert value(metrics, "edgeinfer_outcomes_lost_total", reason="buffer_full") == 0
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "cannot commit" in m]) == 1  # once per state change, not per try
    assert len([m for m in messages if "recovered" in m]) == 1


def test_held_outcomes_are_bounded_and_the_overflow_is_counted(flaky):
    async def main():
        metrics = Metrics()
        writer = StoreWriter(AsyncStore(flaky), metrics, max_held=5, retry=(0.01, 0.02))
        flaky.failures = 10**9
        task = asyncio.create_task(writer.run())
        for i in range(8):
            await writer.submit([outcome(i)])
            await asyncio.sleep(0.02)  # let each one be taken (and fail) before the next
        assert writer.failing
        assert value(metrics, "edgeinfer_store_failing") == 1
        left = await writer.close(0.1)
        await asyncio.wait_for(task, 1.0)
        return metrics, left

    metrics, left = asyncio.run(main())
    assert value(metrics, "edgeinfer_outcomes_lost_total", reason="buffer_full") == 3
    assert left == 5
    assert value(metrics, "edgeinfer_outcomes_lost_total", reason="shutdown") == 5
    assert flaky.count("events") == 0


def test_close_with_a_full_queue_and_a_stuck_store_returns_by_its_deadline(flaky):
    """The old close() put a sentinel into the bounded queue and could wait forever."""

    async def main():
        metrics = Metrics()
        writer = StoreWriter(AsyncStore(flaky), metrics, max_items=1, retry=(5.0, 5.0))
        flaky.failures = 10**9
        task = asyncio.create_task(writer.run())
        await writer.submit([outcome(0)])
        await asyncio.sleep(0.05)  # taken, failed, now in a 5 s backoff
        await writer.submit([outcome(1)])  # the queue is full now
        loop = asyncio.get_running_loop()
        start = loop.time()
        left = await writer.close(0.2)
        took = loop.time() - start
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return left, took

    left, took = asyncio.run(main())
    assert left == 2
    assert took < 2.0  # bounded by the deadline, not by the 5 s backoff


def test_a_forced_exit_abandons_the_drain_at_once(flaky):
    async def main():
        metrics = Metrics()
        writer = StoreWriter(AsyncStore(flaky), metrics, retry=(0.01, 0.02))
        flaky.failures = 10**9
        task = asyncio.create_task(writer.run())
        await writer.submit([outcome(0), outcome(1), outcome(2)])
        await asyncio.sleep(0.05)
        abandon = asyncio.Event()
        abandon.set()
        left = await writer.close(60.0, abandon=abandon)
        await asyncio.wait_for(task, 1.0)  # run() returns too
        return metrics, left

    metrics, left = asyncio.run(main())
    assert left == 3
    assert value(metrics, "edgeinfer_outcomes_lost_total", reason="shutdown") == 3


def test_everything_submitted_before_close_is_committed(flaky):
    async def main():
        writer = StoreWriter(AsyncStore(flaky), Metrics())
        task = asyncio.create_task(writer.run())
        for i in range(50):
            await writer.submit([outcome(i)])
        left = await writer.close(5.0)
        await task
        return left, writer.events_written

    left, written = asyncio.run(main())
    assert (left, written) == (0, 50)
    assert flaky.count("events") == 50


def test_a_held_backlog_is_committed_in_bounded_transactions(flaky):
    """After a long failure the held outcomes go in transactions of at most max_commit: one transaction of
    everything held (up to 20,000 outcomes, ~15 MB) could never fit into the WAL of a nearly full disk."""

    async def main():
        writer = StoreWriter(AsyncStore(flaky), Metrics(), max_commit=500, retry=(0.01, 0.02))
        flaky.failures = 3
        task = asyncio.create_task(writer.run())
        await writer.submit([outcome(i) for i in range(1800)])
        assert await writer.close(10.0) == 0
        await task

    asyncio.run(main())
    committed = flaky.sizes[3:]  # after the three failures
    assert sum(committed) == 1800 and max(flaky.sizes) <= 500
    assert [json.loads(e.body)["seq"] for e in flaky.events()] == list(range(1800))
