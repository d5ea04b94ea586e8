"""``edgeinfer run`` and SIGHUP, end to end: the real CLI in a subprocess, the bundled model, a synthetic
camera, a real Mosquitto and the real store.

An invalid config + SIGHUP: the daemon logs each problem with file:line and keeps running on the old one.
A valid change + SIGHUP: it logs what changed and runs on the new config in the same process (the new
camera's events reach the store and the broker) without saying ``offline`` in between. SIGTERM: exit 0,
every event delivered, the store intact. On the way: the status line names the sink, and /metrics has
the process metrics and the MQTT backlog gauge and no ``_created`` series.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import urllib.request
import uuid
from pathlib import Path

import pytest
from conftest import free_port
from daemon_helpers import ROOT, start_daemon, wait_for
from mqtt_helpers import Subscriber

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _config(device: str, data_dir: Path, port: int, http_port: int, fps: str, yard: bool) -> str:
    if not (ROOT / "models" / "bundled" / "manifest.json").exists():
        pytest.fail("no bundled model (models/bundled/manifest.json): build it before running this test")
    second = (
        "  - {name: yard, source: {type: synthetic, seed: 2}, fps: 4, events: every_frame}\n" if yard else ""
    )
    return (
        f"device: {device}\n"
        f"data_dir: {data_dir}\n"
        "detector: {instances: 1, threads: 1}\n"
        f"http: {{listen: '127.0.0.1:{http_port}'}}\n"
        f"mqtt: {{host: 127.0.0.1, port: {port}, topic_prefix: {device}, stats_interval_s: 1}}\n"
        "cameras:\n"
        "  - name: dock\n"
        "    source: {type: synthetic, seed: 1}\n"
        f"    fps: {fps}\n"
        "    events: every_frame\n"
        f"{second}"
    )


def _events(db: Path) -> dict[str, int]:
    """Events per camera so far; none while the daemon has not created the store (or its tables) yet."""
    if not db.exists():
        return {}
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        if (
            conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'").fetchone()
            is None
        ):
            return {}  # the file is there a moment before its schema: polled in between
        return dict(conn.execute("SELECT camera, COUNT(*) FROM events GROUP BY camera").fetchall())


def test_sighup_reloads_a_valid_config_and_keeps_running_on_an_invalid_one(broker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    device = f"r{uuid.uuid4().hex[:8]}"
    data_dir, config, log = tmp_path / "data", tmp_path / "edgeinfer.yaml", tmp_path / "daemon.log"
    db = data_dir / "edgeinfer.db"
    http_port = free_port()
    subscriber = Subscriber(broker.port, [f"{device}/{device}/#"], client_id=f"s-{device}", persistent=False)
    config.write_text(_config(device, data_dir, broker.port, http_port, "5", yard=False))
    daemon = start_daemon(config, log, "--status-interval", "0.5")
    try:
        wait_for(lambda: _events(db).get("dock", 0) >= 3, 90, "the first events", daemon, log)
        wait_for(
            lambda: "mqtt connected backlog" in log.read_text(), 30, "a status line with MQTT", daemon, log
        )

        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as response:
            scraped = response.read().decode().splitlines()
        names = {line.split(" ")[0].split("{")[0] for line in scraped if not line.startswith("#")}
        assert {"process_resident_memory_bytes", "edgeinfer_mqtt_backlog_events"} <= names
        assert [n for n in names if n.endswith("_created")] == []

        # An invalid value: every problem logged with file:line, the daemon keeps running on the old config.
        text = _config(device, data_dir, broker.port, http_port, "-1", yard=False)
        fps_line = text.splitlines().index("    fps: -1") + 1
        config.write_text(text)
        daemon.send_signal(signal.SIGHUP)
        expected = f"{config}:{fps_line}: cameras[0].fps: Input should be greater than 0"
        wait_for(lambda: expected in log.read_text(), 20, "the reload error", daemon, log)
        before = _events(db).get("dock", 0)
        wait_for(
            lambda: _events(db).get("dock", 0) > before + 2, 30, "events after the bad reload", daemon, log
        )
        assert "reload: restarting" not in log.read_text()

        # A valid change: a second camera. What changed is logged, its events arrive.
        config.write_text(_config(device, data_dir, broker.port, http_port, "5", yard=True))
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload:   cameras[1]: added" in log.read_text(), 20, "the reload diff", daemon, log)
        wait_for(lambda: _events(db).get("yard", 0) >= 3, 60, "events of the new camera", daemon, log)
        wait_for(
            lambda: any(t.endswith("/yard/detections") for t, _p, _r in subscriber.snapshot()),
            30,
            "the new camera's events on MQTT",
            daemon,
            log,
        )
        assert daemon.poll() is None  # the same process

        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0, log.read_text()[-4000:]
    finally:
        if daemon.poll() is None:
            os.kill(daemon.pid, signal.SIGKILL)
            daemon.wait(10)
        subscriber.close()

    output = log.read_text()
    assert "Traceback" not in output, output[-4000:]
    assert output.count("running: ") == 2, output[-4000:]  # started once, restarted once
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        last_id = conn.execute("SELECT MAX(id) FROM events").fetchone()[0]
        cursor = conn.execute(
            "SELECT last_id FROM cursors WHERE sink = 'mqtt' AND stream = 'events'"
        ).fetchone()
    assert cursor == (last_id,)  # every stored event was acknowledged by the broker
    statuses = [p for t, p, _r in subscriber.snapshot() if t.endswith("/status")]
    assert statuses == [b"online", b"online", b"offline"]  # no `offline` between the two runs
