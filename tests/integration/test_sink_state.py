"""What the status line and /metrics say about the outputs while their server is down: real Mosquitto and
VictoriaMetrics, stopped mid-test; the backlog is counted from the store, not from the (absent) server."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from edgeinfer.app.daemon import Daemon
from edgeinfer.config import Config, DetectorConfig, InfluxDBConfig
from edgeinfer.detect.build import open_detector
from edgeinfer.sinks.influx import InfluxForwarder
from edgeinfer.store.sqlite import AsyncStore, Store

pytestmark = pytest.mark.integration


async def _until(predicate, within: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(predicate())


def test_influxdb_reports_disconnected_and_its_growing_backlog_while_down(victoria, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = AsyncStore(Store(tmp_path / "store.db"))
    registry = CollectorRegistry()
    cfg = InfluxDBConfig(
        url=victoria.url, org="edge", bucket="b", token=SecretStr("t"), flush_interval_s=0.1, timeout_s=1
    )
    forwarder = InfluxForwarder(cfg, store, registry, backoff=(0.1, 0.3))
    now_ns = time.time_ns()

    def gauge() -> float | None:
        return registry.get_sample_value("edgeinfer_influxdb_backlog_points")

    async def scenario() -> None:
        assert forwarder.connected is None  # nothing tried yet
        stop = asyncio.Event()
        task = asyncio.create_task(forwarder.run(stop))
        try:
            await store.run(store.store.append, points=[f"s v={i} {now_ns + i}" for i in range(20)])
            assert await _until(lambda: forwarder.connected is True and gauge() == 0, 20)
            victoria.stop()
            await store.run(store.store.append, points=[f"s v={i} {now_ns + 100 + i}" for i in range(30)])
            assert await _until(lambda: forwarder.connected is False, 20)
            assert await forwarder.count_backlog() == 30
            assert gauge() == 30
        finally:
            stop.set()
            await task

    try:
        asyncio.run(scenario())
    finally:
        victoria.start()
        store.close()


def test_the_status_line_and_gauge_show_the_mqtt_backlog_while_the_broker_is_down(
    broker, tmp_path: Path, caplog
) -> None:  # type: ignore[no-untyped-def]
    config = Config.model_validate(
        {
            "device": "down-box",
            "data_dir": str(tmp_path),
            "http": {"enabled": False},
            "detector": {"instances": 1, "threads": 1},
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "topic_prefix": "down"},
            "cameras": [
                {
                    "name": "cam0",
                    "fps": 10,
                    "events": "every_frame",
                    "source": {"type": "synthetic", "seed": 1},
                }
            ],
        }
    )
    detector = open_detector(DetectorConfig(threads=1))
    broker.stop()
    try:
        daemon = Daemon(config, detector=detector, duration=2.5, status_interval=0.5)
        with caplog.at_level(logging.INFO, logger="edgeinfer.app.daemon"):
            summary = asyncio.run(daemon.run())
    finally:
        broker.start()
        detector.close()
    assert summary.events > 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("fps ")]
    backlogs = [
        int(m.group(1)) for line in lines if (m := re.search(r"\| mqtt disconnected backlog (\d+)$", line))
    ]
    assert backlogs and backlogs[-1] > 0, lines
    assert daemon.metrics.registry.get_sample_value("edgeinfer_mqtt_backlog_events") == backlogs[-1]
