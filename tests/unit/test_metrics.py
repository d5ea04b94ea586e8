"""What /metrics serves: the daemon's registry scraped with generate_latest, as Prometheus would."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from edgeinfer.app.metrics import Metrics
from edgeinfer.config import MQTTConfig
from edgeinfer.pipeline.types import StageTimes
from edgeinfer.sinks.mqtt_publisher import MQTTPublisher
from edgeinfer.store.sqlite import AsyncStore, EventRow, Store


def _scrape(metrics: Metrics) -> list[str]:
    return generate_latest(metrics.registry).decode().splitlines()


def _busy(metrics: Metrics) -> None:
    """Every kind of series has a child: counters, histograms, labelled and not."""
    metrics.bind(["dock"])
    metrics.frame_captured("dock")
    metrics.frame_dropped("dock", "stale")
    metrics.frame_done("dock", StageTimes(1.0, 2.0, 3.0, 4.0, 10.0), True, 1.0)
    metrics.batch_done(2)
    metrics.errors.labels("store").inc()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="process_* metrics read /proc")
def test_the_registry_has_the_process_metrics():
    metrics = Metrics()
    samples = {line.split(" ")[0] for line in _scrape(metrics) if not line.startswith("#")}
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"} <= samples
    assert metrics.registry.get_sample_value("process_resident_memory_bytes") > 0


def test_no_created_series():
    metrics = Metrics()
    _busy(metrics)
    lines = _scrape(metrics)
    assert any(line.startswith("edgeinfer_frames_processed_total{") for line in lines)
    assert any(line.startswith("edgeinfer_stage_latency_seconds_count{") for line in lines)
    created = [line for line in lines if not line.startswith("#") and "_created" in line.split(" ")[0]]
    assert created == []


def test_the_mqtt_backlog_gauge_counts_the_store_without_a_broker(tmp_path: Path):
    """The backlog is counted from the store, so it is known exactly when MQTT is down (no broker here:
    port 1 refuses, and the publisher is never run)."""
    metrics = Metrics()
    store = AsyncStore(Store(tmp_path / "store.db"))
    publisher = MQTTPublisher(MQTTConfig(host="127.0.0.1", port=1), "box", store, metrics.registry, dict)
    try:
        assert metrics.registry.get_sample_value("edgeinfer_mqtt_backlog_events") == 0
        assert "edgeinfer_mqtt_backlog_events 0.0" in _scrape(metrics)

        async def scenario() -> int:
            events = [EventRow("dock", i, "{}") for i in range(7)]
            await store.run(store.store.append, events=events)
            return await publisher.count_backlog()

        assert asyncio.run(scenario()) == 7
        assert "edgeinfer_mqtt_backlog_events 7.0" in _scrape(metrics)
        assert publisher.connected is False
    finally:
        store.close()
