"""Where the pipeline's CPU goes: CPU seconds per group of this process's threads (Linux ``/proc``).

On a small machine the runtime's inference and the pipeline's own per-frame work share the same cores, so
the CPU a frame costs in all threads together bounds the throughput: ``cores / (CPU per frame)`` frames a
second at best, however the work is scheduled. The benchmark reports each group's share per frame and
that bound (``cpu_bound_fps``) beside the pipeline's figures.

Python threads are grouped by their names (the pipeline names every thread it starts); threads Python
did not start (a runtime's own worker pool, OpenCV's) are ``native``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path

TASKS = Path("/proc/self/task")
GROUPS = (  # (group, what a thread's name starts with), first match wins
    ("inference", "edgeinfer.infer"),
    ("stages", "edgeinfer.cpu"),  # prepare, decode, filters, tracking, outcomes
    ("event loop", "MainThread"),
    ("store", "edgeinfer.store"),
)
CAPTURE_SUFFIX = ".capture"  # edgeinfer[<camera>].capture


def group_of(name: str | None) -> str:
    """The group of a thread by its Python name (None: not a Python thread)."""
    if name is None:
        return "native"
    for group, prefix in GROUPS:
        if name.startswith(prefix):
            return group
    return "captures" if name.endswith(CAPTURE_SUFFIX) else "other"


def thread_cpu() -> dict[int, tuple[str, float]] | None:
    """Per thread id of this process: (group, CPU seconds so far, user + system); None without ``/proc``."""
    if not TASKS.is_dir():
        return None
    names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float]] = {}
    for task in TASKS.iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        fields = stat.rpartition(")")[2].split()  # after "pid (comm)": fields 3.. of proc(5)
        tid = int(task.name)
        out[tid] = (group_of(names.get(tid)), (int(fields[11]) + int(fields[12])) / tick)
    return out


def cpu_by_group(
    before: Mapping[int, tuple[str, float]], after: Mapping[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds per group between two :func:`thread_cpu` snapshots (a thread started in between counts
    from zero; one that ended in between is lost, which the pipeline's long-lived threads never do)."""
    spent: dict[str, float] = {}
    for tid, (group, seconds) in after.items():
        spent[group] = spent.get(group, 0.0) + seconds - before.get(tid, (group, 0.0))[1]
    return dict(sorted(spent.items(), key=lambda item: -item[1]))
