"""`edgeinfer watch` lines: the format of `edgeinfer events` (local time and zone), for events, status
and stats; which topics --status / --stats / --detections subscribe to."""

from __future__ import annotations

import json
import time

import pytest

from edgeinfer.cli import build_parser
from edgeinfer.commands.watch import format_message, topics_of

EVENT = {
    "device": "box",
    "camera": "gate",
    "seq": 7,
    "ts": "2026-09-21T14:13:20.123Z",
    "model": "shapes-s",
    "detections": [{"label": "person", "class_id": 0, "score": 0.91234, "box": [1, 2, 3, 4]}],
    "latency_ms": {"e2e": 1.0},
    "batch_size": 1,
}
STATS = {
    "uptime_s": 3600.2,
    "fps": {"front": 10.0, "back": 9.94},
    "drops": {"front": 3, "back": 0},
    "batch_size_mean": 1.5,
    "latency_ms": {"p50": 12.0, "p90": 14.1, "p99": 21.5},
    "device": "box",
    "ts": "2026-09-21T14:13:20.000Z",
    "store_backlog": {"mqtt": 0, "influxdb": 12},
}


@pytest.fixture
def berlin(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_an_event_is_the_events_line_in_local_time(berlin) -> None:  # type: ignore[no-untyped-def]
    payload = json.dumps(EVENT).encode()
    line = format_message("edgeinfer/box/gate/detections", payload, all_devices=False)
    assert line == "2026-09-21T16:13:20.123+02:00  gate         #7      person 0.91"
    every = format_message("edgeinfer/box/gate/detections", payload, all_devices=True)
    assert every.startswith("2026-09-21T16:13:20.123+02:00  box/gate     #7 ")


def test_status_and_stats_lines(berlin) -> None:  # type: ignore[no-untyped-def]
    status = format_message("edgeinfer/box/status", b"online", all_devices=True)
    assert status.endswith("  box          status online") and status[:4].isdigit()
    stats = format_message("edgeinfer/box/stats", json.dumps(STATS).encode(), all_devices=True)
    assert stats == (
        "2026-09-21T16:13:20.000+02:00  box          stats fps front=10.0 back=9.9 | batch 1.50 | "
        "e2e p50 12.0 ms p99 21.5 ms | dropped 3 | backlog mqtt=0 influxdb=12"
    )
    with pytest.raises(ValueError):
        format_message("edgeinfer/box/gate/detections", b"not json", all_devices=False)


@pytest.mark.parametrize(
    ("flags", "topics"),
    [
        ([], ["p/d/+/detections"]),
        (["--camera", "gate"], ["p/d/gate/detections"]),
        (["--status"], ["p/d/status"]),
        (["--stats", "--status"], ["p/d/status", "p/d/stats"]),
        (["--stats", "--detections"], ["p/d/+/detections", "p/d/stats"]),
    ],
)
def test_what_it_subscribes_to(flags: list[str], topics: list[str]) -> None:
    args = build_parser().parse_args(["watch", *flags])
    assert topics_of(args, "p", "d") == topics


def test_json_and_text_exclude_each_other() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["watch", "--json", "--text"])
