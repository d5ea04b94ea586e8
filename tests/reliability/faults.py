"""Real file-system faults for the reliability tests: a small tmpfs (a full disk) and a read-only bind mount,
each in a private mount namespace (``unshare``), so nothing stays mounted if a test dies and the host's
mounts are never touched. As root ``unshare -m``; otherwise ``unshare -rm`` (a user namespace, where the
kernel allows it). Where neither works the test is skipped with the reason (never silently)."""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@functools.cache
def _unshare() -> list[str] | str:
    """The unshare command line that lets us mount, or why there is none."""
    if shutil.which("unshare") is None:
        return "unshare(1) is not installed"
    argv = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-r", "-m"]
    probe = subprocess.run(
        [
            *argv,
            "sh",
            "-c",
            "mount -t tmpfs -o size=1m tmpfs /mnt 2>&1 || mount -t tmpfs -o size=1m tmpfs /tmp",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"cannot mount in a private mount namespace here: {(probe.stderr or probe.stdout).strip()}"
    return argv


def in_mount_namespace(setup: str, argv: list[str], *, timeout: float = 120, env: dict[str, str] | None = None
                       ) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """Run ``setup`` (shell: mounts) and then ``argv`` in a private mount namespace; skip if impossible."""
    unshare = _unshare()
    if isinstance(unshare, str):
        pytest.skip(unshare)
    script = f"set -e\n{setup}\nexec {shlex.join(argv)}"
    return subprocess.run(
        [*unshare, "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        check=False,
    )


def small_fs(mountpoint: Path, size: str) -> str:
    """Shell lines mounting a tmpfs of ``size`` (e.g. ``4m``) at ``mountpoint``: a small partition."""
    return f"mkdir -p {shlex.quote(str(mountpoint))}\nmount -t tmpfs -o size={size},mode=0755 tmpfs {shlex.quote(str(mountpoint))}"


def read_only_view(source: Path, mountpoint: Path) -> str:
    """Shell lines showing ``source`` read-only at ``mountpoint`` (a bind mount remounted ro: EROFS for
    every write, root included)."""
    src, dst = shlex.quote(str(source)), shlex.quote(str(mountpoint))
    return f"mkdir -p {dst}\nmount --bind {src} {dst}\nmount -o remount,ro,bind {dst}"


def python(*args: str) -> list[str]:
    return [sys.executable, *args]
