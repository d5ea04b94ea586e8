"""A store that cannot be written: ``edgeinfer events`` still reads it (and writes nothing), and a data dir
that cannot be created or written is one clear line from ``edgeinfer run``, not a traceback.

What proves "read-only" here: a read-only bind mount (the kernel answers EROFS to every write, root
included; the tests run as root, where 0o555/0o444 alone would not bind), plus the bytes and the listing
of the directory, unchanged afterwards. The permission bits are set as well, for runs as a normal user.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faults import REPO, in_mount_namespace, python, read_only_view

from edgeinfer.errors import StoreError
from edgeinfer.store.sqlite import STORE_FILE, EventRow, Store


def _bodies(n: int, start: int = 0) -> list[EventRow]:
    t0 = 1_790_000_000_000_000_000
    rows = []
    for i in range(start, start + n):
        body = {"device": "box", "camera": "gate", "seq": i, "ts": "2026-09-21T14:13:20.000Z", "model": "m",
                "detections": [], "latency_ms": {"e2e": 1.0, "queue": 0.1, "preprocess": 0.2, "inference": 0.5,
                "postprocess": 0.2}, "batch_size": 1}  # fmt: skip
        rows.append(EventRow("gate", t0 + i, json.dumps(body, separators=(",", ":")), i))
    return rows


def _snapshot(directory: Path) -> dict[str, tuple[str, float]]:
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime)
        for p in sorted(directory.iterdir())
    }


def _lock_down(directory: Path) -> None:
    for p in directory.iterdir():
        p.chmod(0o444)
    directory.chmod(0o555)


def _unlock(directory: Path) -> None:
    directory.chmod(0o755)
    for p in directory.iterdir():
        p.chmod(0o644)


def test_events_reads_a_cleanly_closed_store_on_a_read_only_file_system(tmp_path):
    data = tmp_path / "data"
    store = Store(data / STORE_FILE)
    rows = _bodies(5)
    store.append(rows)
    store.close()
    (data / STORE_FILE).with_name(STORE_FILE + "-reserve").unlink()  # only the database: as on a copied card
    _lock_down(data)
    before = _snapshot(data)
    view = tmp_path / "ro"
    try:
        result = in_mount_namespace(
            read_only_view(data, view), python("-m", "edgeinfer", "events", "--json", "--data-dir", str(view))
        )
    finally:
        _unlock(data)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "".join(r.body + "\n" for r in rows)
    assert _snapshot(data) == before  # not a byte, not a file, not an mtime changed


def test_events_reads_the_wal_of_a_running_daemon_through_a_read_only_mount(tmp_path):
    data = tmp_path / "data"
    writer = Store(data / STORE_FILE)  # stays open, as the daemon's: the newest rows are in its WAL
    try:
        rows = _bodies(3)
        writer.append(rows)
        assert (data / (STORE_FILE + "-wal")).stat().st_size > 0
        view = tmp_path / "ro"
        result = in_mount_namespace(
            read_only_view(data, view), python("-m", "edgeinfer", "events", "--json", "--data-dir", str(view))
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout == "".join(r.body + "\n" for r in rows)
    finally:
        writer.close()


def test_a_read_only_open_writes_nothing_and_refuses_writes(tmp_path):
    store = Store(tmp_path / STORE_FILE)
    store.append(_bodies(2))
    store.close()
    before = _snapshot(tmp_path)
    time.sleep(0.01)  # an mtime change would show
    reader = Store(tmp_path / STORE_FILE, readonly=True)
    assert [e.doc["seq"] for e in reader.events()] == [0, 1]
    with pytest.raises(StoreError, match="readonly"):
        reader.append(_bodies(1, start=2))
    with pytest.raises(sqlite3.OperationalError, match=r"readonly|query_only"):
        reader._db.execute("CREATE TABLE x (y)")
    reader.close()
    assert _snapshot(tmp_path) == before  # no -wal/-shm left behind, no checkpoint, no reserve


def test_a_data_dir_that_cannot_be_created_is_one_line(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "edgeinfer", "run", "--duration", "1", "--data-dir", str(blocker / "state")],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"edgeinfer: error: local store: cannot create the data directory {blocker / 'state'}: Not a directory"
        " (set data_dir or --data-dir)"
    )


def test_a_data_dir_on_a_read_only_file_system_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty").chmod(stat.S_IRWXU)
    view = tmp_path / "ro"
    result = in_mount_namespace(
        read_only_view(tmp_path / "empty", view),
        python("-m", "edgeinfer", "run", "--duration", "1", "--data-dir", str(view / "state")),
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"edgeinfer: error: local store: cannot create the data directory {view / 'state'}: Read-only file system"
        " (set data_dir or --data-dir)"
    )
    existing = in_mount_namespace(  # the directory exists but cannot be written: also one line
        read_only_view(tmp_path / "empty", view),
        python("-m", "edgeinfer", "run", "--duration", "1", "--data-dir", str(view)),
    )
    assert existing.returncode == 1 and "Traceback" not in existing.stderr, existing.stderr
    assert (
        existing.stderr.strip()
        .splitlines()[-1]
        .startswith(f"edgeinfer: error: cannot open the local store {view / STORE_FILE}")
    )
