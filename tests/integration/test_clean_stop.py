"""Acceptance: a clean stop (SIGTERM, broker up) publishes every committed event before ``offline``.

The real daemon (bundled model, four synthetic cameras, as fast as the detector goes, an event per frame) against the real
Mosquitto: after SIGTERM the subscriber has every event the store holds, all of them before the
``offline`` status, and the store's MQTT backlog is 0 (nothing waits for the next start).
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from daemon_helpers import start_daemon
from mqtt_helpers import Subscriber

from edgeinfer.sinks.mqtt_publisher import SINK
from edgeinfer.store.sqlite import Store

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_sigterm_publishes_every_committed_event_before_offline(broker, schemas, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    device = f"d{uuid.uuid4().hex[:8]}"
    subscriber = Subscriber(
        broker.port, [f"{device}/{device}/+/detections", f"{device}/{device}/status"], client_id=f"s-{device}",
        persistent=False,
    )  # fmt: skip
    data_dir = tmp_path / "data"
    config = tmp_path / "edgeinfer.yaml"
    config.write_text(
        f"""
device: {device}
data_dir: {data_dir}
cameras:
  - {{name: a, source: {{type: synthetic, seed: 1, prerender: 16}}, events: every_frame}}
  - {{name: b, source: {{type: synthetic, seed: 2, prerender: 16}}, events: every_frame}}
  - {{name: c, source: {{type: synthetic, seed: 3, prerender: 16}}, events: every_frame}}
  - {{name: d, source: {{type: synthetic, seed: 4, prerender: 16}}, events: every_frame}}
detector: {{instances: 1, threads: 1}}
http: {{enabled: false}}
mqtt: {{host: 127.0.0.1, port: {broker.port}, topic_prefix: {device}, stats_interval_s: 60}}
"""
    )
    log = tmp_path / "daemon.log"
    detections = lambda ms: [m for m in ms if m[0].endswith("/detections")]  # noqa: E731
    daemon = start_daemon(config, log)
    try:
        assert subscriber.wait_for(lambda ms: len(detections(ms)) >= 200, 90), log.read_text()[-3000:]
        daemon.send_signal(signal.SIGTERM)  # mid-stream: events are being committed and published
        assert daemon.wait(20) == 0, log.read_text()[-3000:]
        assert subscriber.wait_for(lambda ms: ms and ms[-1][1] == b"offline", 10), log.read_text()[-3000:]
        time.sleep(0.5)  # anything published after offline would arrive now
    finally:
        if daemon.poll() is None:
            os.kill(daemon.pid, signal.SIGKILL)
            daemon.wait(10)
        subscriber.close()
    store = Store(data_dir / "edgeinfer.db")
    try:
        stored = [(e.camera, e.doc["seq"]) for e in store.events()]
        left = store.backlog(SINK, "events")
    finally:
        store.close()
    messages = subscriber.snapshot()
    offline = max(i for i, m in enumerate(messages) if m[0].endswith("/status") and m[1] == b"offline")
    received = []
    for i, (topic, payload, _retain) in enumerate(messages):
        if topic.endswith("/detections"):
            event = json.loads(payload)
            schemas["detection-event"].validate(event)
            assert i < offline, "an event arrived after offline"
            received.append((event["camera"], event["seq"]))
    missing = set(stored) - set(received)
    print(f"{len(stored)} events stored, {len(set(received))} received before offline, {left} left unsent")
    assert left == 0 and not missing, f"{len(missing)} of {len(stored)} never sent: {sorted(missing)[:8]}"
    assert set(received) == set(stored)
