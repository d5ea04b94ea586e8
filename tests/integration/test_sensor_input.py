"""Sensor input against a real Mosquitto: persistent sessions, manual acks, and malformed input."""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from mqtt_helpers import publish_all
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry

from edgeinfer.config import MQTTConfig, SensorSubscription, TriggerCondition, TriggerConfig
from edgeinfer.lineprotocol import parse_line
from edgeinfer.mqtt.topics import TopicTemplate
from edgeinfer.sensors.context import SensorContext
from edgeinfer.sensors.input import SensorInput
from edgeinfer.sensors.parse import Rejected, parse_payload
from edgeinfer.sensors.triggers import Triggers
from edgeinfer.store.sqlite import AsyncStore, Store

pytestmark = pytest.mark.integration


async def _until(predicate, within: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


def _points(store: Store) -> list[str]:
    return [row.body for row in store.pending("reader", "points", 1_000_000, after_id=0)]


def _cfg(broker, prefix: str, protocol: str, sensors: list[SensorSubscription], **extra) -> MQTTConfig:  # type: ignore[no-untyped-def]
    return MQTTConfig(
        host=broker.host,
        port=broker.port,
        client_id=f"box-{prefix}",
        protocol=protocol,
        sensors=sensors,
        **extra,
    )


async def _run_until(sensor: SensorInput, predicate, within: float) -> bool:  # type: ignore[no-untyped-def]
    stop = asyncio.Event()
    task = asyncio.create_task(sensor.run(stop))
    try:
        return await _until(lambda: sensor.client.connections > 0 and predicate(), within)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_persistent_session_delivers_readings_published_while_down(
    broker, tmp_path: Path, protocol: str
) -> None:  # type: ignore[no-untyped-def]
    prefix = f"s{uuid.uuid4().hex[:8]}"
    sub = SensorSubscription(topic=prefix + "/{site}/{sensor}", measurement="env", format="value")
    cfg = _cfg(broker, prefix, protocol, [sub])
    store = Store(tmp_path / "store.db")
    astore = AsyncStore(store)
    calls: list[tuple[str, float, float]] = []
    rule = TriggerConfig(when=TriggerCondition(series=f"{prefix}/hall/pir", equals=1), camera="front", fps=12)

    def on_trigger(camera: str, fps: float, for_s: float) -> None:
        calls.append((camera, fps, for_s))

    def make() -> SensorInput:
        return SensorInput(
            cfg, "box", astore, CollectorRegistry(), SensorContext(), Triggers([rule], on_trigger)
        )

    first = make()

    async def online() -> bool:
        async def publish_one() -> None:
            await _until(lambda: first.client.connections > 0, 10)
            await asyncio.sleep(0.3)  # SUBACK
            await asyncio.to_thread(publish_all, broker.port, [(f"{prefix}/hall/pir", b"1")])

        publisher = asyncio.create_task(publish_one())
        ok = await _run_until(first, lambda: len(_points(store)) == 1, 15)
        await publisher
        return ok

    assert asyncio.run(online())
    assert first.context.latest(f"{prefix}/hall/pir") == 1.0
    assert calls == [("front", 12.0, 10.0)]

    # The daemon is down: 50 readings are queued in its session; the broker restarts meanwhile.
    publish_all(broker.port, [(f"{prefix}/hall/t{i % 5}", str(i).encode()) for i in range(50)])
    broker.stop()
    broker.start()

    second = make()
    assert asyncio.run(_run_until(second, lambda: len(_points(store)) == 51, 20)), len(_points(store))
    values = sorted(parse_line(line).fields["value"] for line in _points(store)[1:])
    assert values == [float(i) for i in range(50)]
    assert {parse_line(line).tags["sensor"] for line in _points(store)[1:]} == {f"t{i}" for i in range(5)}
    astore.close()


# --------------------------------------------------------------------------- malformed input

MAX_BYTES = 512
JSON_SUB = SensorSubscription(topic="{prefix}/json/{site}/{sensor}", measurement="env", tags=["room"])
VALUE_SUB = SensorSubscription(topic="{prefix}/value/{site}", measurement="raw", format="value")
LINE_SUB = SensorSubscription(topic="{prefix}/line/{site}", format="line")

_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
_json_any = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)  # fmt: skip


@st.composite
def _deep(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(min_value=5, max_value=200))
    return ('{"a":' * depth + "1" + "}" * depth).encode()


_bad_json = st.one_of(
    st.binary(max_size=64),  # mostly not UTF-8 / not JSON
    st.text(max_size=40).map(str.encode),  # not JSON, or JSON of the wrong kind
    _json_any.map(lambda v: json.dumps(v).encode()),  # wrong types, arrays, no numeric field, ...
    st.dictionaries(st.text(min_size=1, max_size=4), st.sampled_from([math.nan, math.inf, -math.inf]), min_size=1,
                    max_size=3).map(lambda d: json.dumps(d).encode()),  # NaN / Infinity
    _deep(),
    st.integers(min_value=MAX_BYTES + 1, max_value=MAX_BYTES + 200).map(lambda n: b'{"t": 1, "pad": "' + b"x" * n + b'"}'),
)  # fmt: skip
_bad_value = st.one_of(
    st.text(max_size=12).map(str.encode),
    st.sampled_from([b"nan", b"-inf", b"Infinity", b"1_0", b"1e999", b"{}"]),
)
_bad_line = st.one_of(
    st.text(max_size=30).map(str.encode), st.sampled_from([b"m f=nan", b"m f=1 x", b"m,t f=1"])
)
_bad = st.one_of(
    st.tuples(st.just("json"), _bad_json),
    st.tuples(st.just("value"), _bad_value),
    st.tuples(st.just("line"), _bad_line),
)


def _generate_bad(prefix: str, subs: dict[str, SensorSubscription], count: int) -> list[tuple[str, bytes]]:
    """Hypothesis generates the malformed payloads; each is checked to be rejected by the parser."""
    found: list[tuple[str, bytes]] = []
    templates = {k: TopicTemplate(s.topic) for k, s in subs.items()}
    topics = {
        "json": f"{prefix}/json/site/s1",
        "value": f"{prefix}/value/site",
        "line": f"{prefix}/line/site",
    }

    @settings(max_examples=count // 40 + 20, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.lists(_bad, min_size=40, max_size=40))
    def collect(batch: list[tuple[str, bytes]]) -> None:
        for kind, payload in batch:
            try:
                parse_payload(subs[kind], templates[kind], topics[kind], payload, now_ns=time.time_ns(),
                              max_bytes=MAX_BYTES)  # fmt: skip
            except Rejected:
                found.append((topics[kind], payload))

    collect()
    assert len(found) >= count, len(found)
    return found[:count]


def test_ten_thousand_malformed_payloads_among_a_thousand_valid_readings(
    broker, tmp_path: Path, record_property
) -> None:  # type: ignore[no-untyped-def]
    prefix = f"f{uuid.uuid4().hex[:8]}"
    subs = {k: s.model_copy(update={"topic": s.topic.replace("{prefix}", prefix)})
            for k, s in {"json": JSON_SUB, "value": VALUE_SUB, "line": LINE_SUB}.items()}  # fmt: skip
    bad = _generate_bad(prefix, subs, 9_900)
    # A topic left in the persistent session by an older config: matches no subscription now.
    stale = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"box-{prefix}-sensors", clean_session=False)
    stale.connect(broker.host, broker.port)
    stale.loop_start()
    stale.subscribe(f"{prefix}/stale/#", qos=1)
    time.sleep(0.3)
    stale.disconnect()
    stale.loop_stop()
    bad += [(f"{prefix}/stale/x", b"1")] * 100
    base_ms = time.time_ns() // 10**6
    good = [
        (f"{prefix}/json/site{i % 7}/s{i % 3}", json.dumps({"t": i, "ok": True, "room": "r", "time": base_ms + i}).encode())
        if i % 2 else (f"{prefix}/line/site{i % 4}", f"m,k=v f={i}i {(base_ms + i) * 10**6}".encode())
        for i in range(1000)
    ]  # fmt: skip
    messages = []  # each valid reading between ten malformed ones
    for i, reading in enumerate(good):
        messages += [*bad[i * 10 : i * 10 + 10], reading]
    assert len(messages) == 11_000

    cfg = _cfg(broker, prefix, "5", list(subs.values()), max_payload_bytes=MAX_BYTES)
    store = Store(tmp_path / "store.db")
    astore = AsyncStore(store)
    registry = CollectorRegistry()
    sensor = SensorInput(cfg, "box", astore, registry, SensorContext(), log_interval_s=3600)

    def handled() -> float:
        accepted = sum(registry.get_sample_value("edgeinfer_sensor_messages_accepted_total", {"subscription": s.topic}) or 0
                       for s in subs.values())  # fmt: skip
        return accepted + _dropped(registry)

    async def scenario() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(sensor.run(stop))
        await _until(lambda: sensor.client.connections > 0, 10)
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await asyncio.to_thread(publish_all, broker.port, messages)
        assert await _until(lambda: handled() >= 11_000, 60), handled()
        elapsed = time.monotonic() - started
        assert not task.done()  # still up
        stop.set()
        await asyncio.wait_for(task, 10)
        return elapsed

    elapsed = asyncio.run(scenario())
    lines = _points(store)
    assert len(lines) == 1000
    stored = sorted(int(parse_line(line).fields.get("t", parse_line(line).fields.get("f"))) for line in lines)
    assert stored == list(range(1000))
    assert _dropped(registry) == 10_000
    assert (
        registry.get_sample_value(
            "edgeinfer_sensor_messages_dropped_total", {"subscription": "(none)", "reason": "unknown_topic"}
        )
        == 100
    )
    record_property("sensor_messages_per_s", round(11_000 / elapsed))
    print(f"11,000 sensor messages handled in {elapsed:.1f} s ({11_000 / elapsed:.0f}/s)")
    astore.close()


def _dropped(registry: CollectorRegistry) -> float:
    return sum(
        sample.value
        for metric in registry.collect()
        if metric.name == "edgeinfer_sensor_messages_dropped"
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


_SENSOR_DAEMON = """
import asyncio, sys
from pathlib import Path
from prometheus_client import CollectorRegistry
from edgeinfer.config import MQTTConfig
from edgeinfer.sensors.context import SensorContext
from edgeinfer.sensors.input import SensorInput
from edgeinfer.store.sqlite import AsyncStore, Store
cfg = MQTTConfig.model_validate_json(sys.argv[1])
store = AsyncStore(Store(Path(sys.argv[2])))
asyncio.run(SensorInput(cfg, "box", store, CollectorRegistry(), SensorContext()).run(asyncio.Event()))
"""


def test_sigkill_mid_stream_loses_no_reading(broker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Received but not yet committed means not acknowledged: after a crash the broker redelivers."""
    prefix = f"k{uuid.uuid4().hex[:8]}"
    sub = SensorSubscription(topic=prefix + "/{site}", format="value")
    cfg = _cfg(broker, prefix, "3.1.1", [sub])
    path = tmp_path / "store.db"
    argv = [sys.executable, "-c", _SENSOR_DAEMON, cfg.model_dump_json(), str(path)]
    Store(path).close()  # the schema, for the reader; the child is the store's one writer (its lock)
    store = Store(path, readonly=True, changing=True)
    process = subprocess.Popen(argv)
    try:
        deadline = time.monotonic() + 20
        while not _points(store) and time.monotonic() < deadline:  # connected and subscribed
            publish_all(broker.port, [(f"{prefix}/warmup", b"-1")])
            time.sleep(0.3)
        readings = [(f"{prefix}/s{i % 3}", str(i).encode()) for i in range(3000)]
        sender = threading.Thread(target=publish_all, args=(broker.port, readings))
        sender.start()
        while len(_points(store)) < 500 and time.monotonic() < deadline + 20:
            time.sleep(0.01)
        process.kill()  # mid-stream: some readings are received and not committed
        process.wait(10)
        killed_at = len(_points(store))
        sender.join(60)
        process = subprocess.Popen(argv)
        expected = {float(i) for i in range(3000)}
        deadline = time.monotonic() + 30
        values: set[float] = set()
        while not expected <= values and time.monotonic() < deadline:
            time.sleep(0.2)
            values = {parse_line(line).fields["value"] for line in _points(store)}  # type: ignore[misc]
    finally:
        process.kill()
        process.wait(10)
    assert 500 <= killed_at < 3000  # the crash really was mid-stream
    assert expected - values == set()
    print(f"killed after {killed_at} stored; {len(_points(store)) - killed_at} stored after the restart")
    store.close()


def test_line_payloads_cannot_spoof_the_daemons_measurements(broker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The probe: 20 forged detections/inference points went into the outbox (and would overwrite real
    ones by series + timestamp). Now each is refused and counted; readings go to the configured measurement."""
    prefix = f"p{uuid.uuid4().hex[:8]}"
    sub = SensorSubscription(topic=prefix + "/{site}", measurement="env", format="line")
    ts = (time.time_ns() // 10**6) * 10**6
    spoofed = [
        (f"{prefix}/hall", f"detections,device=box,camera=dock,label=person,model=m count=9i,max_score=1.0 {ts + i}".encode())
        if i % 2 else (f"{prefix}/hall", f"inference,device=box,camera=dock,model=m e2e_ms=0.1 {ts + i}".encode())
        for i in range(20)
    ]  # fmt: skip
    valid = [(f"{prefix}/hall", f"cpu usage={i} {ts + 100 + i}".encode()) for i in range(5)]
    store = Store(tmp_path / "store.db")
    astore = AsyncStore(store)
    registry = CollectorRegistry()
    sensor = SensorInput(_cfg(broker, prefix, "3.1.1", [sub]), "box", astore, registry, SensorContext())

    async def scenario() -> None:
        async def publish() -> None:
            await _until(lambda: sensor.client.connections > 0, 10)
            await asyncio.sleep(0.3)  # SUBACK
            await asyncio.to_thread(publish_all, broker.port, spoofed + valid)

        publisher = asyncio.create_task(publish())
        handled = lambda: _dropped(registry) + len(_points(store)) >= 25  # noqa: E731
        assert await _run_until(sensor, handled, 20)
        await publisher

    asyncio.run(scenario())
    points = [parse_line(line) for line in _points(store)]
    assert [p.measurement for p in points] == ["env"] * 5
    assert sorted(p.fields["usage"] for p in points) == [0.0, 1.0, 2.0, 3.0, 4.0]
    reason = {"subscription": sub.topic, "reason": "reserved_measurement"}
    assert registry.get_sample_value("edgeinfer_sensor_messages_dropped_total", reason) == 20
    astore.close()


def test_flood_is_bounded_by_the_queue_and_every_message_is_stored_or_counted(broker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The probe: 5,000 msgs/s for 30 s grew memory (the queue was unbounded). A burst of QoS 0 readings
    arrives while the store is stalled (another writer holds SQLite's lock): at most sensor_queue_size
    messages wait, the rest is dropped and counted, and dropped + stored == sent."""
    prefix = f"q{uuid.uuid4().hex[:8]}"
    bound, sent = 50, 3000
    sub = SensorSubscription(topic=prefix + "/{sensor}", format="value", qos=0)
    cfg = _cfg(broker, prefix, "5", [sub], sensor_queue_size=bound)
    path = tmp_path / "store.db"
    store = Store(path)
    astore = AsyncStore(store)
    registry = CollectorRegistry()
    sensor = SensorInput(cfg, "box", astore, registry, SensorContext(), log_interval_s=3600)
    readings = [(f"{prefix}/s{i % 4}", str(i).encode()) for i in range(sent)]
    depth: list[float] = []

    def queued() -> float:
        value = registry.get_sample_value("edgeinfer_sensor_queue_messages") or 0.0
        depth.append(value)
        return value

    def dropped() -> float:
        return (
            registry.get_sample_value(
                "edgeinfer_sensor_messages_dropped_total", {"subscription": sub.topic, "reason": "queue_full"}
            )
            or 0.0
        )

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(sensor.run(stop))
        await _until(lambda: sensor.client.connections > 0, 10)
        await asyncio.sleep(0.3)  # SUBACK
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # the disk stalls: nothing can be stored
        try:
            await asyncio.to_thread(publish_all, broker.port, readings, 0)
            arrived = await _until(lambda: dropped() + queued() >= sent - bound, 20)
            assert arrived, (dropped(), queued())
            await asyncio.sleep(0.3)  # nothing more is on its way
        finally:
            blocker.rollback()
            blocker.close()
        assert await _until(lambda: dropped() + len(_points(store)) >= sent, 20), (
            dropped(),
            len(_points(store)),
        )
        assert not task.done()
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    stored = len(_points(store))
    print(f"{sent} sent: {stored} stored, {dropped():.0f} dropped, at most {max(depth):.0f} waiting")
    assert dropped() + stored == sent
    assert dropped() >= sent - 2 * bound  # only what fit in the queue (and the batch being stored) got in
    assert max(depth) <= bound
    astore.close()


def test_qos1_flood_beyond_the_brokers_window_waits_for_room_and_loses_nothing(
    broker, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """CI saw Mosquitto send ~1,800 unacknowledged messages against a receive maximum of 500; a QoS 1
    reading that found the queue full was then acknowledged and dropped. Here the broker's window (3.1.1:
    max_inflight_messages 100) is wider than the queue (50) and the store is stalled: the queue stays within
    its bound, the daemon still stops on time, and a new run stores every reading."""
    prefix = f"w{uuid.uuid4().hex[:8]}"
    bound, sent = 50, 3000
    sub = SensorSubscription(topic=prefix + "/{sensor}", format="value", qos=1)
    cfg = _cfg(broker, prefix, "3.1.1", [sub], sensor_queue_size=bound)
    path = tmp_path / "store.db"
    store = Store(path)
    readings = [(f"{prefix}/s{i % 4}", str(i).encode()) for i in range(sent)]

    async def stalled_run() -> tuple[float, float]:
        registry = CollectorRegistry()
        sensor = SensorInput(cfg, "box", AsyncStore(store), registry, SensorContext(), log_interval_s=3600)
        stop = asyncio.Event()
        task = asyncio.create_task(sensor.run(stop))
        await _until(lambda: sensor.client.connections > 0, 10)
        await asyncio.sleep(0.3)  # SUBACK
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # the disk stalls: nothing can be stored
        try:
            await asyncio.to_thread(publish_all, broker.port, readings)
            assert await _until(lambda: len(sensor._inbox) >= bound, 20), len(sensor._inbox)
            await asyncio.sleep(0.5)  # the broker's window is open wider than the queue
            stop.set()
            await asyncio.wait_for(task, 20)  # paho's thread, waiting for room, is released
        finally:
            blocker.rollback()
            blocker.close()
        return sensor._inbox.peak, _dropped(registry)

    async def second_run() -> float:
        registry = CollectorRegistry()
        sensor = SensorInput(cfg, "box", AsyncStore(store), registry, SensorContext(), log_interval_s=3600)
        stop = asyncio.Event()
        task = asyncio.create_task(sensor.run(stop))
        assert await _until(lambda: len(_points(store)) >= sent, 60), len(_points(store))
        stop.set()
        await asyncio.wait_for(task, 10)
        return _dropped(registry)

    peak, dropped_first = asyncio.run(stalled_run())
    dropped_second = asyncio.run(second_run())
    values = sorted(int(parse_line(line).fields["value"]) for line in _points(store))  # type: ignore[arg-type]
    assert peak <= bound
    assert (dropped_first, dropped_second) == (0, 0)
    assert values == list(range(sent))  # every reading once: nothing stored before the stop was acked
