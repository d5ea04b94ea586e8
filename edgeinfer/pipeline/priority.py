"""The runtime's threads run nicer than the threads that feed them (Linux: niceness is per thread).

On a small CPU the instances' ``invoke()`` keeps every core busy, and the daemon's own Python threads
(prepare, decode and outcomes, the event loop, the store, the captures) then wait for a time slice behind
it; one of them holding the GIL while it waits stalls all the others. Those threads are the instances'
supply, so the wait comes back as instances idle for lack of a prepared batch. With the instance threads
a few steps nicer, the feeders run as soon as they are ready and inference takes every cycle left over:
on the 2-core benchmark machine the pipeline reached 0.89-0.91 of its CPU-bound ceiling instead of 0.81-0.85
(benchmarks/RESULTS.md, "2026-12-02, fourth pass").
"""

from __future__ import annotations

import logging
import os
import sys
import threading

logger = logging.getLogger(__name__)

MAX_NICE = 19


def instance_nice(configured: int, threads: int | None) -> int:
    """How much nicer the instances' threads run: ``configured`` for single-threaded instances, 0 where
    each has ``threads`` > 1. Such a runtime splits every invoke between the instance's thread and a pool
    of its own, which Python does not start and stays at the daemon's priority; the invoke then waits for
    its slowest part, the niced one (1 camera at 10 fps on 1 x 2 threads: e2e p50 7.5-7.8 ms against
    5.6-6.0 at the same priority, benchmarks/RESULTS.md)."""
    return configured if threads is None or threads <= 1 else 0


def lower_this_thread(steps: int) -> bool:
    """Make the calling thread ``steps`` nicer than it is (capped at 19); False where that is not done
    (not Linux, ``steps`` 0, or the system refused)."""
    if steps <= 0 or sys.platform != "linux":
        return False
    tid = threading.get_native_id()
    try:
        now = os.getpriority(os.PRIO_PROCESS, tid)  # on Linux, a thread id addresses that thread alone
        os.setpriority(os.PRIO_PROCESS, tid, min(MAX_NICE, now + steps))
    except OSError as exc:  # a seccomp profile may forbid it; the pipeline runs as before
        logger.debug("could not lower the priority of thread %s: %s", threading.current_thread().name, exc)
        return False
    return True
