"""Batcher policy, driven by a fake clock: deterministic, no sleeping."""

import asyncio
import math
from collections import Counter

import numpy as np
import pytest

from edgeinfer.pipeline.batcher import Batcher, BatchPolicy
from edgeinfer.sources.frame import Frame

IMAGE = np.zeros((2, 2, 3), np.uint8)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make(cameras, clock, **policy):
    priorities = cameras if isinstance(cameras, dict) else dict.fromkeys(cameras, 1.0)
    return Batcher(priorities, BatchPolicy(**policy), clock=clock)


def frame(camera, clock, seq=0, age=0.0):
    return Frame(camera, seq, IMAGE, 0, clock.now - age)


def names(batch):
    return sorted(f.camera for f in batch)


def test_lone_camera_dispatches_at_once():
    clock = FakeClock()
    b = make(["a"], clock, max_batch_size=4, max_delay_s=0.010)
    for seq in range(5):
        b.put(frame("a", clock, seq))
        batch = b.take(clock.now)
        assert isinstance(batch, list) and [f.seq for f in batch] == [seq]
        clock.advance(0.2)  # 5 fps


def test_full_batch_dispatches_at_once():
    clock = FakeClock()
    b = make(["a", "b", "c", "d", "e"], clock, max_batch_size=2, max_delay_s=0.010)
    for cam in "abcde":  # all active (first frames): wait for more until full
        b.put(frame(cam, clock))
    batch = b.take(clock.now)
    assert isinstance(batch, list) and len(batch) == 2


def test_waits_for_active_cameras_but_not_beyond_max_delay():
    clock = FakeClock()
    b = make(["a", "b"], clock, max_batch_size=4, max_delay_s=0.010)
    for _ in range(3):  # both cameras deliver at 30 fps: both active
        b.put(frame("a", clock))
        b.put(frame("b", clock))
        assert names(b.take(clock.now)) == ["a", "b"]
        clock.advance(0.033)
    b.put(frame("a", clock))  # b pauses
    deadline = b.take(clock.now)
    assert deadline == pytest.approx(clock.now + 0.010)
    clock.advance(0.005)
    assert isinstance(b.take(clock.now), float)  # still waiting for b
    clock.advance(0.005)
    assert names(b.take(clock.now)) == ["a"]  # max_delay reached: a goes alone


def test_paused_camera_stops_counting_as_active():
    clock = FakeClock()
    b = make(["a", "b"], clock, max_batch_size=4, max_delay_s=0.010)
    for _ in range(3):
        b.put(frame("a", clock))
        b.put(frame("b", clock))
        b.take(clock.now)
        clock.advance(0.033)
    clock.advance(0.5)  # b silent for 15 of its frame intervals (a keyframe stall)
    b.put(frame("a", clock))
    assert names(b.take(clock.now)) == ["a"]  # no wait for b at all


def test_newer_frame_supersedes_pending_one():
    clock = FakeClock()
    b = make(["a", "b"], clock, max_batch_size=4, max_delay_s=0.010)
    b.put(frame("a", clock, seq=1))
    assert b.put(frame("a", clock, seq=2)).seq == 1
    clock.advance(0.010)
    assert [f.seq for f in b.take(clock.now)] == [2]
    assert b.counters()["a"]["superseded"] == 1


def test_stale_frames_are_dropped_and_counted():
    clock = FakeClock()
    dropped = []
    b = Batcher({"a": 1.0}, BatchPolicy(4, 0.010, 0.5), clock=clock, on_stale=dropped.append)
    b.put(frame("a", clock, age=0.6))
    assert b.take(clock.now) == math.inf
    assert len(dropped) == 1 and b.counters()["a"]["stale"] == 1


def test_batch_size_one_disables_batching():
    clock = FakeClock()
    b = make(["a", "b", "c"], clock, max_batch_size=1, max_delay_s=0.010)
    for cam in "abc":
        b.put(frame(cam, clock))
    sizes = []
    while isinstance(batch := b.take(clock.now), list):
        sizes.append(len(batch))
    assert sizes == [1, 1, 1]


def simulate(b, clock, rates, seconds, service_s):
    """Cameras deliver at their rates; the detector takes one batch every service_s (overload)."""
    served = Counter()
    next_due = dict.fromkeys(rates, clock.now)
    busy_until = clock.now
    end = clock.now + seconds
    while clock.now < end:
        for cam, fps in rates.items():
            if clock.now >= next_due[cam]:
                b.put(frame(cam, clock))
                next_due[cam] += 1 / fps
        if clock.now >= busy_until:
            batch = b.take(clock.now)
            if isinstance(batch, list):
                served.update(f.camera for f in batch)
                busy_until = clock.now + service_s
        clock.advance(0.001)
    return served


def test_fast_camera_cannot_starve_slow_ones():
    clock = FakeClock()
    b = make(["fast", "s1", "s2"], clock, max_batch_size=2, max_delay_s=0.010)
    served = simulate(b, clock, {"fast": 200.0, "s1": 10.0, "s2": 10.0}, seconds=5, service_s=0.02)
    assert served["s1"] >= 0.9 * 5 * 10 and served["s2"] >= 0.9 * 5 * 10  # slow cameras get all their frames


def test_priority_shares_under_overload_without_starvation():
    clock = FakeClock()
    b = make({"hi": 3.0, "lo": 1.0, "lo2": 1.0}, clock, max_batch_size=1, max_delay_s=0.0)
    served = simulate(b, clock, {"hi": 100.0, "lo": 100.0, "lo2": 100.0}, seconds=5, service_s=0.02)
    assert served["hi"] / served["lo"] == pytest.approx(3.0, rel=0.15)
    assert served["lo2"] / served["lo"] == pytest.approx(1.0, rel=0.15)


def test_next_batch_wakes_on_put_and_returns_empty_when_closed():
    async def scenario():
        b = Batcher({"a": 1.0}, BatchPolicy(4, 0.010, 0.5))
        waiter = asyncio.create_task(b.next_batch())
        await asyncio.sleep(0)
        b.put(Frame("a", 7, IMAGE, 0, asyncio.get_running_loop().time()))
        first = await asyncio.wait_for(waiter, 1)
        closer = asyncio.create_task(b.next_batch())
        await asyncio.sleep(0)
        b.close()
        return first, await asyncio.wait_for(closer, 1)

    first, last = asyncio.run(scenario())
    assert [f.seq for f in first] == [7]
    assert last == []
