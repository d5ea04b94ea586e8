"""The real daemon as a subprocess, and what the tests read back from its store and from the TSDB."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from edgeinfer.lineprotocol import parse_line
from edgeinfer.store.sqlite import Store

ROOT = Path(__file__).resolve().parents[2]

# (VictoriaMetrics series name, tags, timestamp in ms): one sample of one field of one point
SeriesKey = tuple[str, frozenset[tuple[str, str]], int]


def start_daemon(config: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``edgeinfer run -c config [args]``, its stdout and stderr appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "edgeinfer", "run", "-c", str(config), *args],
            cwd=ROOT,
            stdout=out,
            stderr=out,
        )


def wait_for(
    predicate: Callable[[], object], within: float, what: str, daemon: subprocess.Popen[bytes], log: Path
) -> None:
    """Poll ``predicate`` until it holds; fail with the log's tail if the daemon exits or time runs out."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return
        if daemon.poll() is not None:
            raise AssertionError(
                f"the daemon exited ({daemon.returncode}) while waiting for {what}: {log.read_text()[-3000:]}"
            )
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: {log.read_text()[-3000:]}")


def store_point_keys(store: Store) -> list[SeriesKey]:
    """Every field of every point the store committed, as the TSDB would name it."""
    keys = []
    for row in store.pending("test-reader", "points", 10_000_000, after_id=0):
        point = parse_line(row.body)
        assert point.ts_ns is not None
        for field in point.fields:
            keys.append((f"{point.measurement}_{field}", frozenset(point.tags.items()), point.ts_ns // 10**6))
    return keys


def tsdb_keys(victoria, selector: str) -> Counter[SeriesKey]:  # type: ignore[no-untyped-def]
    """How often the TSDB holds each (series, tags, timestamp) the selector matches."""
    return Counter(
        (
            series["metric"]["__name__"],
            frozenset((k, v) for k, v in series["metric"].items() if k != "__name__"),
            ts,
        )
        for series in victoria.export(selector)
        for ts in series["timestamps"]
    )
