"""Acceptance: TSDB down for 30 s, the daemon SIGKILLed during the outage and started again.

Once the TSDB is back, every point the daemon committed to its store (before, during and after the outage,
from both daemon runs) is in the TSDB exactly once per series and timestamp.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from daemon_helpers import ROOT, start_daemon, store_point_keys, tsdb_keys, wait_for
from mqtt_helpers import Subscriber

from edgeinfer.sinks.influx import SINK
from edgeinfer.store.sqlite import Store

pytestmark = [pytest.mark.integration, pytest.mark.slow]
OUTAGE_S = 30.0


def _model_line() -> str:
    if (ROOT / "models" / "bundled" / "manifest.json").exists():
        return "detector: {instances: 1, threads: 1}"
    int8 = ROOT / "models" / "bundled" / "shapes-s_int8.tflite"
    if int8.exists():
        return f"detector: {{model: {int8}, instances: 1, threads: 1}}"
    pytest.fail("no bundled model (models/bundled/manifest.json): build it before running this test")


def test_tsdb_outage_with_daemon_sigkill_loses_and_duplicates_nothing(
    victoria, broker, schemas, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    device = f"d{uuid.uuid4().hex[:8]}"
    # The real daemon's MQTT messages (status, stats, events) are validated against the schemas too.
    subscriber = Subscriber(broker.port, [f"{device}/{device}/#"], client_id=f"s-{device}", persistent=False)
    data_dir = tmp_path / "data"
    config = tmp_path / "edgeinfer.yaml"
    config.write_text(
        f"""
device: {device}
data_dir: {data_dir}
cameras:
  - name: cam1
    source: {{type: synthetic, seed: 1}}
    fps: 5
    events: every_frame
{_model_line()}
http: {{enabled: false}}
mqtt: {{host: 127.0.0.1, port: {broker.port}, topic_prefix: {device}, stats_interval_s: 1}}
influxdb: {{url: "{victoria.url}", org: edge, bucket: edge, token: "t0ken-6c1f", batch_size: 50, flush_interval_s: 0.2,
            timeout_s: 2}}
"""
    )
    log = tmp_path / "daemon.log"
    selector = f'{{device="{device}"}}'
    daemon = start_daemon(config, log)
    try:
        wait_for(lambda: len(victoria.export(selector)) > 0, 90, "the first points in the TSDB", daemon, log)
        victoria.stop()
        outage_started = time.time_ns()
        time.sleep(8)
        daemon.send_signal(signal.SIGKILL)  # mid-outage: whatever was not acknowledged is still in the store
        daemon.wait(10)
        daemon = start_daemon(config, log)
        time.sleep(max(0.0, OUTAGE_S - (time.time_ns() - outage_started) / 1e9))
        outage_ended = time.time_ns()
        victoria.start()
        store = Store(data_dir / "edgeinfer.db", readonly=True, changing=True)  # the daemon is the writer
        wait_for(lambda: store.backlog(SINK, "points") < 20, 60, "the backlog to drain", daemon, log)
        daemon.send_signal(signal.SIGTERM)  # clean stop: its last points are flushed
        assert daemon.wait(20) == 0, log.read_text()[-3000:]
    finally:
        if daemon.poll() is None:
            os.kill(daemon.pid, signal.SIGKILL)
            daemon.wait(10)
        subscriber.close()
    assert store.backlog(SINK, "points") == 0, log.read_text()[-3000:]
    expected = store_point_keys(store)
    during = [k for k in expected if outage_started // 10**6 <= k[2] <= outage_ended // 10**6]
    assert during, "the daemon produced no points during the outage"
    # VictoriaMetrics makes freshly ingested rows searchable asynchronously: poll briefly before judging.
    deadline = time.monotonic() + 15
    stored = tsdb_keys(victoria, selector)
    while set(expected) - set(stored) and time.monotonic() < deadline:
        time.sleep(0.5)
        stored = tsdb_keys(victoria, selector)
    missing = sorted(k[2] for k in set(expected) - set(stored))
    assert not missing, (
        f"{len(missing)} missing, ms {missing[:3]}..{missing[-3:]}, outage {outage_started // 10**6}"
    )
    assert set(stored) == set(expected)
    assert set(stored.values()) == {1}, [k for k, n in stored.items() if n > 1][:5]
    assert "t0ken-6c1f" not in log.read_text()
    messages = subscriber.snapshot()
    for topic, payload, _retain in messages:
        kind = topic.rsplit("/", 1)[1]
        if kind == "count":  # tracking's counts: an integer as text (schemas/README.md)
            assert payload.decode().isdigit(), (topic, payload)
            continue
        schema = {
            "detections": "detection-event",
            "objects": "object-event",
            "status": "status",
            "stats": "stats",
        }
        schemas[schema[kind]].validate(payload.decode() if kind == "status" else json.loads(payload))
    statuses = [p for t, p, _r in messages if t.endswith("/status")]
    assert statuses == [b"online", b"offline", b"online", b"offline"]  # the 1st offline is the Last Will
    assert any(
        t.endswith("/stats") for t, _p, _r in messages
    )  # the daemon logged write failures, never the token
    print(f"{len(set(expected))} series samples, {len(during)} from the outage window, all exactly once")
    store.close()
