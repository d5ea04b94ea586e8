"""The malloc arena cap the daemon sets at start (edgeinfer/memory.py), in fresh interpreters."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

CALL = "from edgeinfer.memory import limit_malloc_arenas; print(limit_malloc_arenas())"


def _run(env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-c", CALL], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the cap is glibc's mallopt")
def test_the_cap_is_set_on_glibc() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    assert _run(env) == "True"


def test_the_users_malloc_arena_max_wins() -> None:
    assert _run({**os.environ, "MALLOC_ARENA_MAX": "4"}) == "False"
