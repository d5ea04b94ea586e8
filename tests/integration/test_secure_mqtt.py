"""TLS + password against a real Mosquitto, `edgeinfer watch`, and secrets never reaching the logs."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import threading
import time
import uuid
from pathlib import Path

import pytest
from certs import make_certificates
from mqtt_helpers import Subscriber, event_row
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from edgeinfer.app.outputs import build_outputs
from edgeinfer.commands.watch import add_parser
from edgeinfer.config import Config, InfluxDBConfig, MQTTConfig, TLSConfig, dump_yaml
from edgeinfer.sinks.influx import InfluxForwarder
from edgeinfer.sinks.mqtt_publisher import SINK, MQTTPublisher
from edgeinfer.store.sqlite import AsyncStore, Store

pytestmark = pytest.mark.integration
TOKEN = "tok-ZX81-secret-value"


def _tls(broker, **extra: object) -> TLSConfig:  # type: ignore[no-untyped-def]
    certs = broker.tls_dir
    return TLSConfig(
        ca_file=certs / "ca.crt", cert_file=certs / "client.crt", key_file=certs / "client.key", **extra
    )


async def _run_for(components, seconds: float, until=None) -> bool:  # type: ignore[no-untyped-def]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(c.run(stop)) for c in components]
    deadline = time.monotonic() + seconds
    reached = False
    while time.monotonic() < deadline:
        if until is not None and until():
            reached = True
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    return reached


def test_tls_and_password_client_delivers_and_no_secret_is_logged(
    tls_broker, tmp_path: Path, caplog: pytest.LogCaptureFixture, schemas
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    prefix = f"tls{uuid.uuid4().hex[:6]}"
    # "localhost" is in the server certificate's names; hostname verification stays on (insecure: false).
    cfg = MQTTConfig(
        host="localhost", port=tls_broker.port, client_id=f"pub-{prefix}", topic_prefix=prefix,
        username=tls_broker.username, password=SecretStr(tls_broker.password), tls=_tls(tls_broker),
    )  # fmt: skip
    certs = tls_broker.tls_dir
    subscriber = Subscriber(
        tls_broker.port, [f"{prefix}/box/+/detections"], client_id=f"sub-{prefix}", persistent=False,
        tls={"ca_certs": str(certs / "ca.crt"), "certfile": str(certs / "client.crt"),
             "keyfile": str(certs / "client.key")},
        auth=(tls_broker.username, tls_broker.password),
    )  # fmt: skip
    store = AsyncStore(Store(tmp_path / "store.db"))
    store.store.append(events=[event_row("box", "front", 0)])
    good = MQTTPublisher(cfg, "box", store, CollectorRegistry(), dict)
    try:
        time.sleep(0.3)
        assert asyncio.run(_run_for([good], 15, lambda: store.store.backlog(SINK, "events") == 0))
        assert subscriber.wait_for(lambda ms: len(ms) == 1, 5)
    finally:
        subscriber.close()
    schemas["detection-event"].validate(json.loads(subscriber.snapshot()[0][1]))

    # Wrong password, and a TSDB that is not there: both log failures, neither logs a secret.
    wrong = "wrong-" + tls_broker.password
    refused = MQTTPublisher(cfg.model_copy(update={"password": SecretStr(wrong)}), "box", store,
                            CollectorRegistry(), dict, backoff=(0.1, 0.2))  # fmt: skip
    influx = InfluxForwarder(
        InfluxDBConfig(url="http://127.0.0.1:9", bucket="b", token=SecretStr(TOKEN), flush_interval_s=0.1),
        store, CollectorRegistry(), backoff=(0.1, 0.2),
    )  # fmt: skip
    store.store.append(points=["m v=1 1"])
    asyncio.run(_run_for([refused, influx], 1.5))
    assert "refused the connection" in caplog.text
    assert "write of 1 points failed" in caplog.text
    for secret in (tls_broker.password, wrong, TOKEN):
        assert secret not in caplog.text
    store.close()


def test_certificate_from_another_ca_is_refused(
    tls_broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    other = tmp_path / "other-ca"
    make_certificates(other)
    cfg = MQTTConfig(
        host="127.0.0.1", port=tls_broker.port, client_id="pub-other", username=tls_broker.username,
        password=SecretStr(tls_broker.password), tls=TLSConfig(ca_file=other / "ca.crt"),
    )  # fmt: skip
    store = AsyncStore(Store(tmp_path / "store.db"))
    publisher = MQTTPublisher(cfg, "box", store, CollectorRegistry(), dict, backoff=(0.1, 0.2))
    assert not asyncio.run(_run_for([publisher], 1.0, publisher.client.connected.is_set))
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
    store.close()


def test_config_show_redacts_password_and_token(tmp_path: Path) -> None:
    config = Config(
        cameras=[{"name": "c", "source": {"type": "synthetic"}}],
        mqtt=MQTTConfig(username="u", password=SecretStr("hunter2-pw")),
        influxdb=InfluxDBConfig(url="http://x:8086", bucket="b", token=SecretStr(TOKEN)),
        data_dir=tmp_path,
    )
    text = dump_yaml(config)
    assert "hunter2-pw" not in text and TOKEN not in text and "********" in text
    assert "hunter2-pw" not in repr(config) and TOKEN not in repr(config)


def test_build_outputs_builds_only_what_is_configured(tmp_path: Path) -> None:
    store = AsyncStore(Store(tmp_path / "store.db"))
    base = Config(cameras=[{"name": "c", "source": {"type": "synthetic"}}], data_dir=tmp_path)
    none = build_outputs(base, store, CollectorRegistry(), dict, lambda *_: None)
    assert none.components == [] and none.context.latest("x") is None
    full = base.model_copy(
        update={
            "mqtt": MQTTConfig(sensors=[{"topic": "s/{site}"}]),
            "influxdb": InfluxDBConfig(url="http://x:8086", bucket="b"),
        }
    )
    names = [
        c.name for c in build_outputs(full, store, CollectorRegistry(), dict, lambda *_: None).components
    ]
    assert names == ["mqtt-publisher", "mqtt-sensors", "influxdb"]
    store.close()


def test_watch_prints_detection_events(broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(
        ["watch", "--host", "127.0.0.1", "--port", str(broker.port), "--prefix", "w", "--camera", "front",
         "--count", "2", "--timeout", "20"]
    )  # fmt: skip
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(args.func(args)))
    thread.start()
    time.sleep(0.5)  # subscribed
    store = AsyncStore(Store(tmp_path / "store.db"))
    for seq in range(3):
        store.store.append(events=[event_row("box", "back" if seq == 1 else "front", seq)])
    publisher = MQTTPublisher(MQTTConfig(host="127.0.0.1", port=broker.port, topic_prefix="w"), "box", store,
                              CollectorRegistry(), dict)  # fmt: skip
    asyncio.run(_run_for([publisher], 10, lambda: not thread.is_alive()))
    thread.join(5)
    assert result == [0]
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["camera"], e["seq"]) for e in printed] == [("front", 0), ("front", 2)]
    store.close()
