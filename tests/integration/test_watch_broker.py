"""`edgeinfer watch` against a real Mosquitto, as a user runs it: what it subscribed to, --status and
--stats, the events format with --text, payloads as received when piped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mqtt_helpers import publish_all

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
EVENT = {
    "device": "box",
    "camera": "gate",
    "seq": 7,
    "ts": "2026-09-21T14:13:20.123Z",
    "model": "shapes-s",
    "detections": [{"label": "person", "class_id": 0, "score": 0.91, "box": [1.0, 2.0, 3.0, 4.0]}],
    "latency_ms": {"e2e": 1.0},
    "batch_size": 1,
}
STATS = {"device": "box", "ts": "2026-09-21T14:13:25.000Z", "fps": {"gate": 10.0}, "drops": {"gate": 0},
         "latency_ms": {"p50": 12.0, "p99": 20.0}, "store_backlog": {"mqtt": 0}}  # fmt: skip


def _watch(port: int, prefix: str, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "edgeinfer", "watch", "--host", "127.0.0.1", "--port", str(port),
         "--prefix", prefix, "--device", "box", "--timeout", "30", *flags],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TZ": "Europe/Berlin"},
    )  # fmt: skip


def test_watch_says_what_it_subscribed_to_and_prints_status_stats_and_events(broker) -> None:  # type: ignore[no-untyped-def]
    prefix = "wcli"
    publish_all(broker.port, [(f"{prefix}/box/status", b"online")], qos=1)  # not retained: sent after
    proc = _watch(broker.port, prefix, "--text", "--status", "--stats", "--detections", "--count", "3")
    try:
        said = proc.stderr.readline()
        assert said.startswith(
            f"edgeinfer watch: subscribed to {prefix}/box/+/detections, {prefix}/box/status, {prefix}/box/stats "
            f"on 127.0.0.1:{broker.port} (MQTT 3.1.1)"
        ), said
        publish_all(broker.port, [
            (f"{prefix}/box/status", b"online"),
            (f"{prefix}/box/stats", json.dumps(STATS).encode()),
            (f"{prefix}/box/gate/detections", json.dumps(EVENT).encode()),
        ])  # fmt: skip
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 3, out
    assert lines[0].endswith("  box          status online")
    assert lines[1].startswith("2026-09-21T16:13:25.000+02:00  box          stats fps gate=10.0 | ")
    assert lines[2] == "2026-09-21T16:13:20.123+02:00  gate         #7      person 0.91"


def test_watch_piped_prints_the_payloads_as_received(broker) -> None:  # type: ignore[no-untyped-def]
    prefix = "wjson"
    proc = _watch(broker.port, prefix, "--status", "--detections", "--count", "2")
    try:
        assert "subscribed to" in proc.stderr.readline()
        publish_all(broker.port, [
            (f"{prefix}/box/gate/detections", json.dumps(EVENT).encode()),
            (f"{prefix}/box/status", b"offline"),
        ])  # fmt: skip
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    first, second = out.splitlines()
    assert json.loads(first) == EVENT and second == "offline"
