"""Small asyncio helpers shared by every component: one Backoff (exponential, full jitter) and wait_any."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable


class Backoff:
    """``next_delay()`` returns ``uniform(0, min(max_s, initial_s * 2**n))`` for the n-th retry.

    ``jitter`` returns a fraction in [0, 1]; inject ``lambda: 1.0`` for the deterministic upper bound.
    """

    def __init__(self, initial_s: float, max_s: float, jitter: Callable[[], float] = random.random) -> None:
        if initial_s <= 0 or max_s < initial_s:
            raise ValueError(f"need 0 < initial_s <= max_s, got {initial_s}, {max_s}")
        self.initial_s = initial_s
        self.max_s = max_s
        self._jitter = jitter
        self.attempt = 0

    def cap(self) -> float:
        """The upper bound of the next delay."""
        return min(self.max_s, self.initial_s * 2.0 ** min(self.attempt, 64))

    def next_delay(self) -> float:
        delay = self.cap() * min(1.0, max(0.0, self._jitter()))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


async def wait_any(*events: asyncio.Event, within: float | None = None) -> bool:
    """Wait until one of the events is set (True) or the timeout passes (False)."""
    if any(e.is_set() for e in events):
        return True
    if not events:
        if within is None:
            raise ValueError("wait_any() without events needs a timeout")
        await asyncio.sleep(within)
        return False
    tasks = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        done, _ = await asyncio.wait(tasks, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
    return bool(done)
