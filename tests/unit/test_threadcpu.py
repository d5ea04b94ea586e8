"""Per-thread CPU accounting for the benchmark: thread names to groups, and real CPU seen per group."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from edgeinfer.bench.threadcpu import cpu_by_group, group_of, thread_cpu


def test_groups_by_the_names_the_pipeline_gives_its_threads() -> None:
    assert group_of("edgeinfer.infer_0") == group_of("edgeinfer.infer.1_0") == "inference"
    assert group_of("edgeinfer.cpu_0") == "stages"
    assert group_of("MainThread") == "event loop"
    assert group_of("edgeinfer.store.sqlite_0") == "store"
    assert group_of("edgeinfer[cam0].capture") == "captures"
    assert group_of("edgeinfer.snapshots_0") == group_of("Thread-3") == "other"
    assert group_of(None) == "native"


def test_snapshots_without_proc(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr("edgeinfer.bench.threadcpu.TASKS", tmp_path / "absent")
    assert thread_cpu() is None


def test_busy_thread_counts_in_its_group_and_an_idle_one_does_not() -> None:
    if thread_cpu() is None:
        pytest.skip(f"no /proc/self/task on {sys.platform}: the benchmark reports no CPU split there")
    go, done, release = threading.Event(), threading.Event(), threading.Event()

    def spin() -> None:
        go.wait()
        end = time.thread_time() + 0.3  # 0.3 s of this thread's own CPU, however the machine is loaded
        while time.thread_time() < end:
            pass
        done.set()
        release.wait()  # alive until the second snapshot: an ended thread's CPU is not in /proc

    busy = threading.Thread(target=spin, name="edgeinfer.cpu_0")
    idle = threading.Thread(target=release.wait, name="edgeinfer.store.sqlite_0")
    busy.start()
    idle.start()
    try:
        before = thread_cpu()
        go.set()
        assert done.wait(30)
        after = thread_cpu()
    finally:
        go.set()
        release.set()
        busy.join()
        idle.join()
    assert before is not None and after is not None
    spent = cpu_by_group(before, after)
    assert spent["stages"] >= 0.25  # clock ticks: 10 ms resolution
    assert spent.get("store", 0.0) < 0.05
    assert list(spent.values()) == sorted(spent.values(), reverse=True)
