"""Fewer malloc arenas: glibc gives each thread that allocates under contention an arena of its own
(up to 8 per core) and seldom returns their freed pages. The daemon's threads (one per camera, one per
detector instance, the pools) each grow one, for memory that a couple of shared arenas serve as well:
measured, the 4-camera pipeline's peak RSS was 184-205 MB with two arenas against 213-238 MB, at the
same throughput (benchmarks/RESULTS.md, 2026-12-02 third pass). ``MALLOC_ARENA_MAX`` in the environment, if set, is the user's choice and
wins; on a C library other than glibc this does nothing."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``arenas``; True when the cap was set here. Call it before the
    process starts its threads (arenas already made stay)."""
    if os.environ.get("MALLOC_ARENA_MAX") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False
