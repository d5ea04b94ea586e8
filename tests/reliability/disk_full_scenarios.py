"""Store scenarios on a small partition, run by test_disk_full.py inside a private mount namespace (a tmpfs
of a few MiB mounted there). Each prints one JSON line of what it observed. Real Store, real SQLite, real
ENOSPC from the kernel.

grow:   the store grows into a partition smaller than max_bytes (the default 512 MiB on a 4 MiB partition).
filler: the store has data, then another file fills the partition to the last byte; the store goes on.
daemon: the real daemon (bundled model, two synthetic cameras, an event per frame) while another file
        fills its partition: /healthz (Daemon.healthy) sampled every 0.2 s, outcomes lost, events stored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path

from edgeinfer.errors import StoreError
from edgeinfer.store.sqlite import STORE_FILE, EventRow, Store

PAD = "x" * 300


def batch(start: int, n: int = 20) -> tuple[list[EventRow], list[tuple[int, str]]]:
    now = time.time_ns()
    events = [EventRow("a", now + i, json.dumps({"seq": start + i, "pad": PAD}), start + i) for i in range(n)]
    points = [(now + i, f"inference,camera=a e2e_ms={start + i} {now + i}") for i in range(n)]
    return events, points


def free_bytes(directory: Path) -> int:
    st = os.statvfs(directory)
    return st.f_bfree * st.f_frsize


def fill(path: Path) -> int:
    """Write ``path`` until the partition has no byte left (ENOSPC); returns its size."""
    written = 0
    with path.open("wb", buffering=0) as out:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
            chunk = b"\xff" * size
            while True:
                try:
                    out.write(chunk)
                except OSError:
                    break
                written += size
    return written


def append_all(store: Store, start: int, batches: int, fails: list[str]) -> int:
    seq = start
    for _ in range(batches):
        events, points = batch(seq)
        try:
            store.append(events, points)
        except StoreError as exc:
            fails.append(str(exc))
            if len(fails) >= 20:  # stuck: stop trying (the old behaviour)
                break
            continue
        seq += len(events)
        store.ack("mqtt", "events", seq - len(events) // 2)  # the broker has about half of them
    return seq


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def _daemon(directory: Path, report: dict[str, object]) -> None:
    from edgeinfer.app.daemon import Daemon
    from edgeinfer.config import Config

    config = Config.model_validate(
        {
            "device": "box",
            "data_dir": str(directory / "data"),
            "http": {"enabled": False},
            "detector": {"instances": 1, "threads": 1},
            "cameras": [
                {
                    "name": f"c{i}",
                    "events": "every_frame",
                    "source": {"type": "synthetic", "seed": i, "prerender": 16},
                }
                for i in (1, 2)
            ],
        }
    )
    daemon = Daemon(config, status_interval=3600)

    async def chaos() -> None:
        while daemon.writer.events_written < 100:  # noqa: ASYNC110 (a counter, no event to wait on)
            await asyncio.sleep(0.1)
        report["events_before_fill"] = daemon.writer.events_written
        report["filler_bytes"] = await asyncio.to_thread(fill, directory / "filler")
        report["free_after_fill"] = free_bytes(directory)
        red = []
        for _ in range(75):  # 15 s
            ok, why = daemon.healthy()
            if not ok:
                red.append(why)
            await asyncio.sleep(0.2)
        report["unhealthy_samples"] = len(red)
        report["unhealthy_first"] = red[0] if red else None
        report["events_after_fill"] = daemon.writer.events_written - int(report["events_before_fill"])  # type: ignore[call-overload]
        daemon.stop.set()

    chaos_task = asyncio.create_task(chaos())
    try:
        summary = await daemon.run()
        report.update(frames=summary.frames, events=summary.events, unfinished=summary.unfinished)
    except Exception as exc:  # what the daemon did before: its exit crashed on the full disk
        report["run_error"] = f"{type(exc).__name__}: {exc}"
    await chaos_task
    registry = daemon.metrics.registry
    report.update(
        outcomes_lost={r: registry.get_sample_value("edgeinfer_outcomes_lost_total", {"reason": r}) or 0
                       for r in ("buffer_full", "shutdown")},
        store_errors=registry.get_sample_value("edgeinfer_errors_total", {"component": "store"}) or 0,
    )  # fmt: skip


def main(scenario: str, directory: Path) -> None:
    lines = Lines()
    logging.getLogger("edgeinfer").addHandler(lines)
    store = Store(directory / STORE_FILE)  # max_bytes: the default 512 MiB, far more than the partition
    store.register_sink("mqtt", "events")
    fails: list[str] = []
    report: dict[str, object] = {
        "partition_bytes": os.statvfs(directory).f_blocks * os.statvfs(directory).f_frsize
    }
    filler = directory / "filler"
    started = time.monotonic()
    if scenario == "daemon":
        store.close()
        (directory / STORE_FILE).unlink()
        asyncio.run(_daemon(directory, report))
        report["seconds"] = round(time.monotonic() - started, 2)
        report["full_lines"] = [line for line in lines.lines if "disk is full" in line]
        report["store_lines"] = [line for line in lines.lines if "local store" in line][:6]
        print(json.dumps(report))
        return
    if scenario == "grow":
        stored = append_all(store, 0, 1500, fails)  # 30,000 events, ~13 MB of rows through a 4 MiB disk
    else:
        stored = append_all(store, 0, 100, fails)
        report["filler_bytes"] = fill(filler)
        report["free_after_fill"] = free_bytes(directory)
        stored = append_all(store, stored, 300, fails)
        report["reserve_after_full"] = getattr(store, "has_reserve", None)
        report["cap_when_full"] = getattr(store, "cap_bytes", None)
        filler.unlink()  # space freed from outside: the next prune raises the cap again
    try:
        last_prune = store.prune().deleted
    except Exception as exc:  # what the store did before it had a reserve: pruning failed too
        last_prune = f"failed: {exc}"
    counters = store.counters()
    report.update(
        seconds=round(time.monotonic() - started, 2),
        appended=stored,
        failed_appends=len(fails),
        first_failure=fails[0] if fails else None,
        in_store=store.count("events"),
        pruned=counters.get("pruned.events", 0),
        undelivered=counters.get("dropped_undelivered.events", 0),
        last_prune=last_prune,
        size_bytes=store.size_bytes(),
        reserve=getattr(store, "has_reserve", None),
        cap_bytes=getattr(store, "cap_bytes", None),
        full_lines=[line for line in lines.lines if "disk is full" in line],
        reserve_back_lines=[line for line in lines.lines if "reserve is back" in line],
        integrity=store._db.execute("PRAGMA integrity_check").fetchone()[0],
    )
    try:
        store.close()
    except Exception as exc:
        report["close_error"] = str(exc)
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
