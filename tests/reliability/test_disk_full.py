"""A full disk, for real: the store on a tmpfs of a few MiB (a private mount namespace, see faults.py).

Before: the WAL (up to 4 MB) filled a small partition long before ``storage.max_bytes`` (512 MiB by
default) meant anything, every commit failed from then on, pruning failed too (deleting rows needs room
in the WAL) and the store stayed stuck until space was freed from outside (1,220 events stored on 4 MiB,
then 20 of 20 appends failed). Now the WAL is bounded, a reserve lets pruning run, and the store caps
itself at what the partition holds: no append fails, and every event is either in the store or counted
as pruned.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from faults import in_mount_namespace, python, small_fs

SCENARIOS = Path(__file__).with_name("disk_full_scenarios.py")

pytestmark = pytest.mark.slow


def _scenario(tmp_path: Path, name: str, size: str) -> dict:
    mount = tmp_path / "small"
    result = in_mount_namespace(small_fs(mount, size), python(str(SCENARIOS), name, str(mount)))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(report)
    return report


def test_a_store_larger_than_its_partition_prunes_itself_instead_of_getting_stuck(tmp_path):
    report = _scenario(tmp_path, "grow", "4m")  # 30,000 events (~13 MB of rows) through 4 MiB
    assert report["failed_appends"] == 0, report["first_failure"]
    assert report["appended"] == 30_000
    assert report["in_store"] + report["pruned"] == report["appended"]  # nothing lost uncounted
    assert report["in_store"] > 1000  # the newest rows are kept, not everything thrown away
    assert report["size_bytes"] <= report["partition_bytes"]
    assert report["reserve"] is True  # made again after it was used
    assert 1 <= len(report["full_lines"]) <= 2  # the cap follows the partition: not one incident per commit
    assert "released the reserve" in report["full_lines"][0]
    assert report["integrity"] == "ok" and "close_error" not in report


def test_another_file_filling_the_disk_does_not_stop_the_store(tmp_path):
    report = _scenario(tmp_path, "filler", "8m")
    assert report["free_after_fill"] == 0  # the partition really was full
    assert report["failed_appends"] == 0, report["first_failure"]
    assert report["in_store"] + report["pruned"] == report["appended"] == 8000
    assert report["reserve_after_full"] is True
    assert report["cap_bytes"] > report["cap_when_full"]  # room again: the cap goes back up
    assert report["integrity"] == "ok" and "close_error" not in report


def test_the_daemon_keeps_storing_while_another_file_fills_its_disk(tmp_path):
    """The real daemon (bundled model, two synthetic cameras). Before: /healthz red within a second ("store
    failing"), 8 events in 15 s, 4,284 outcomes lost at the stop and a traceback from the final checkpoint."""
    report = _scenario(tmp_path, "daemon", "8m")
    assert report["free_after_fill"] == 0
    assert "run_error" not in report, report["run_error"]
    assert report["outcomes_lost"] == {"buffer_full": 0, "shutdown": 0} and report["unfinished"] == 0
    assert report["store_errors"] == 0  # no commit failed: the store made room itself
    assert report["unhealthy_samples"] == 0, report["unhealthy_first"]
    assert report["events_after_fill"] > 100  # it went on storing events on the full disk
    assert report["events"] == report["frames"]  # an event per frame, every one committed
    assert len(report["full_lines"]) == 1  # one line for the state change, not one per commit
