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
from conftest import ACL_DEVICE, ACL_PASSWORD, ACL_PREFIX, ACL_SENSORS, ACL_USER
from mqtt_helpers import Subscriber, event_row, publish_all
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from edgeinfer.app.outputs import build_outputs
from edgeinfer.commands.watch import add_parser
from edgeinfer.config import Config, InfluxDBConfig, MQTTConfig, SensorSubscription, TLSConfig, dump_yaml
from edgeinfer.sensors.context import SensorContext
from edgeinfer.sensors.input import SensorInput
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


# --------------------------------------------------------------------------- authentication and ACLs


def _tls_kwargs(broker) -> dict[str, str]:  # type: ignore[no-untyped-def]
    certs = broker.tls_dir
    return {"ca_certs": str(certs / "ca.crt"), "certfile": str(certs / "client.crt"),
            "keyfile": str(certs / "client.key")}  # fmt: skip


def _acl_cfg(broker, protocol: str, **extra: object) -> MQTTConfig:  # type: ignore[no-untyped-def]
    return MQTTConfig(
        host="localhost", port=broker.port, protocol=protocol, topic_prefix=ACL_PREFIX, username=ACL_USER,
        password=SecretStr(ACL_PASSWORD), tls=_tls(broker), **extra,
    )  # fmt: skip


def _refused(registry: CollectorRegistry, kind: str, reason: str) -> float:
    labels = {"kind": kind, "reason": reason}
    return registry.get_sample_value("edgeinfer_mqtt_publish_refused_total", labels) or 0.0


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_publish_outside_the_acl_is_reported_and_not_retried(
    tls_broker, tmp_path: Path, caplog: pytest.LogCaptureFixture, protocol: str
) -> None:  # type: ignore[no-untyped-def]
    """Mosquitto 2 refuses a publish the ACL does not grant with PUBACK 0x87 (MQTT 5) and drops it silently
    (MQTT 3.1.1). Before: the refusal was not counted, and with 3.1.1 nothing said the events were lost."""
    caplog.set_level(logging.WARNING)
    run = uuid.uuid4().hex[:6]
    subscriber = Subscriber(
        tls_broker.port, [f"{ACL_PREFIX}/#"], client_id=f"acl-sub-{run}", persistent=False,
        tls=_tls_kwargs(tls_broker), auth=(tls_broker.username, tls_broker.password),
    )  # fmt: skip
    try:
        # Inside the ACL: delivered, nothing refused, and (3.1.1) the delivery check passes.
        store = AsyncStore(Store(tmp_path / "allowed.db"))
        for seq in range(3):
            store.store.append(events=[event_row(ACL_DEVICE, "front", seq)])
        registry = CollectorRegistry()
        good = MQTTPublisher(
            _acl_cfg(tls_broker, protocol, client_id=f"good-{run}"), ACL_DEVICE, store, registry, dict
        )

        def good_done() -> bool:
            return store.store.backlog(SINK, "events") == 0 and (protocol == "5" or good.delivering is True)

        assert asyncio.run(_run_for([good], 15, good_done))
        assert subscriber.wait_for(lambda ms: sum(t.endswith("/detections") for t, _, _ in ms) == 3, 5)
        assert (
            sum(
                s.value
                for m in registry.collect()
                if m.name == "edgeinfer_mqtt_publish_refused"
                for s in m.samples
            )
            == 0
        )

        # Outside it: device "intruder" is not under edgeacl/box/.
        caplog.clear()
        store2 = AsyncStore(Store(tmp_path / "refused.db"))
        for seq in range(5):
            store2.store.append(events=[event_row("intruder", "front", seq)])
        registry2 = CollectorRegistry()
        bad = MQTTPublisher(
            _acl_cfg(tls_broker, protocol, client_id=f"bad-{run}"), "intruder", store2, registry2, dict
        )
        if protocol == "5":
            done = lambda: len(store2.store.dead_letters(SINK)) == 5  # noqa: E731
        else:
            done = lambda: bad.delivering is False  # noqa: E731
        assert asyncio.run(_run_for([bad], 15, done))
        asyncio.run(_run_for([bad], 1.0))  # a second connection: nothing is resent, nothing logged anew
        if protocol == "5":
            assert _refused(registry2, "event", "not_authorized") == 5
            assert _refused(registry2, "status", "not_authorized") >= 1
            assert len(store2.store.dead_letters(SINK)) == 5  # not resent on the second connection
        else:
            assert _refused(registry2, "status", "not_delivered") >= 1
        assert store2.store.backlog(SINK, "events") == 0
        reports = [r.getMessage() for r in caplog.records if r.name == "edgeinfer.sinks.mqtt_publisher"]
        assert len(reports) == 1, reports  # one line, not one per event
        assert "ACL" in reports[0] and f"{ACL_PREFIX}/intruder" in reports[0]
        time.sleep(0.3)
        assert not [t for t, _, _ in subscriber.snapshot() if "/intruder/" in t]
    finally:
        subscriber.close()
    store.close()
    store2.close()


def test_sensor_input_reads_its_topics_with_tls_password_and_acl(tls_broker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sub = SensorSubscription(topic=ACL_SENSORS + "/{sensor}", format="value")
    cfg = _acl_cfg(tls_broker, "5", client_id=f"sens-{uuid.uuid4().hex[:6]}", sensors=[sub])
    store = AsyncStore(Store(tmp_path / "store.db"))
    sensor = SensorInput(cfg, ACL_DEVICE, store, CollectorRegistry(), SensorContext())

    async def scenario() -> bool:
        async def publish() -> None:
            await sensor.client.connected.wait()
            await asyncio.sleep(0.3)  # SUBACK
            readings = [(f"{ACL_SENSORS}/t{i}", str(i).encode()) for i in range(3)]
            await asyncio.to_thread(publish_all, tls_broker.port, readings, tls=_tls_kwargs(tls_broker),
                                    auth=(tls_broker.username, tls_broker.password))  # fmt: skip

        publisher = asyncio.create_task(publish())
        stored = lambda: len(store.store.pending("reader", "points", 100, after_id=0)) == 3  # noqa: E731
        ok = await _run_async([sensor], 15, stored)
        await publisher
        return ok

    assert asyncio.run(scenario())
    store.close()


async def _run_async(components, seconds: float, until) -> bool:  # type: ignore[no-untyped-def]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(c.run(stop)) for c in components]
    deadline = time.monotonic() + seconds
    reached = False
    while time.monotonic() < deadline:
        if until():
            reached = True
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    return reached


def test_broker_refuses_clients_without_password_or_without_certificate(
    tls_broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING)
    store = AsyncStore(Store(tmp_path / "store.db"))
    certs = tls_broker.tls_dir
    other = tmp_path / "other-ca"
    make_certificates(other)
    cases = {
        "no credentials": MQTTConfig(host="localhost", port=tls_broker.port, tls=_tls(tls_broker)),
        "no client certificate": MQTTConfig(
            host="localhost", port=tls_broker.port, username=tls_broker.username,
            password=SecretStr(tls_broker.password), tls=TLSConfig(ca_file=certs / "ca.crt"),
        ),
        "client certificate from another CA": MQTTConfig(
            host="localhost", port=tls_broker.port, username=tls_broker.username,
            password=SecretStr(tls_broker.password),
            tls=TLSConfig(ca_file=certs / "ca.crt", cert_file=other / "client.crt", key_file=other / "client.key"),
        ),
    }  # fmt: skip
    for case, cfg in cases.items():
        caplog.clear()
        publisher = MQTTPublisher(cfg.model_copy(update={"client_id": f"anon-{uuid.uuid4().hex[:6]}"}), "box",
                                  store, CollectorRegistry(), dict, backoff=(0.1, 0.2))  # fmt: skip
        assert not asyncio.run(_run_for([publisher], 1.0, publisher.client.connected.is_set)), case
        expected = "refused the connection: Not authorized" if case == "no credentials" else "localhost"
        assert expected in caplog.text, (case, caplog.text[-1000:])
    store.close()


def test_client_certificate_alone_is_the_credential(cert_broker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """use_identity_as_username: the certificate's CN is the user; a client without one is refused."""
    run = uuid.uuid4().hex[:6]
    cfg = MQTTConfig(host="localhost", port=cert_broker.port, topic_prefix=ACL_PREFIX, client_id=f"cert-{run}",
                     protocol="5", tls=_tls(cert_broker))  # fmt: skip
    subscriber = Subscriber(cert_broker.port, [f"{ACL_PREFIX}/{ACL_DEVICE}/+/detections"], client_id=f"cs-{run}",
                            persistent=False, tls=_tls_kwargs(cert_broker))  # fmt: skip
    store = AsyncStore(Store(tmp_path / "store.db"))
    store.store.append(events=[event_row(ACL_DEVICE, "front", 0)])
    registry = CollectorRegistry()
    try:
        time.sleep(0.3)
        publisher = MQTTPublisher(cfg, ACL_DEVICE, store, registry, dict)
        assert asyncio.run(_run_for([publisher], 15, lambda: store.store.backlog(SINK, "events") == 0))
        assert subscriber.wait_for(lambda ms: len(ms) == 1, 5)
        # The same identity outside its ACL: refused and dead-lettered.
        store.store.append(events=[event_row("intruder", "front", 0)])
        refusals = CollectorRegistry()
        intruder = MQTTPublisher(cfg, "intruder", store, refusals, dict)
        assert asyncio.run(_run_for([intruder], 15, lambda: len(store.store.dead_letters(SINK)) == 1))
        assert _refused(refusals, "event", "not_authorized") == 1
        # Without a certificate: no way in.
        bare = MQTTConfig(
            host="localhost", port=cert_broker.port, tls=TLSConfig(ca_file=cert_broker.tls_dir / "ca.crt")
        )
        nobody = MQTTPublisher(bare, "box", store, CollectorRegistry(), dict, backoff=(0.1, 0.2))
        assert not asyncio.run(_run_for([nobody], 1.0, nobody.client.connected.is_set))
    finally:
        subscriber.close()
    store.close()
