"""The MQTT publisher against a real Mosquitto: outages, order, status, stats, schemas."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest
from mqtt_helpers import Subscriber, event_row
from prometheus_client import CollectorRegistry

from edgeinfer.config import MQTTConfig
from edgeinfer.sinks.mqtt_publisher import SINK, MQTTPublisher
from edgeinfer.store.sqlite import AsyncStore, Store

pytestmark = pytest.mark.integration

CAMERAS = ("front", "back", "yard")
DEVICE = "box1"


def _stats() -> dict[str, object]:
    return {"fps": {"front": 10.0}, "drops": 3, "latency_ms": {"p50": 12.0, "p95": 30.0, "p99": 41.5}}


async def _append(store: AsyncStore, seqs: dict[str, int], count: int) -> None:
    for _ in range(count):
        camera = CAMERAS[sum(seqs.values()) % len(CAMERAS)]
        await store.run(store.store.append, events=[event_row(DEVICE, camera, seqs[camera])])
        seqs[camera] += 1
        await asyncio.sleep(0)


async def _until(predicate, within: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


def test_thousand_events_across_two_broker_outages_arrive_in_per_camera_order(
    broker, tmp_path: Path, schemas, record_property
) -> None:  # type: ignore[no-untyped-def]
    prefix = f"t{uuid.uuid4().hex[:8]}"
    subscriber = Subscriber(
        broker.port, [f"{prefix}/{DEVICE}/+/detections", f"{prefix}/{DEVICE}/status", f"{prefix}/{DEVICE}/stats"],
        client_id=f"consumer-{prefix}",
    )  # fmt: skip
    store = AsyncStore(Store(tmp_path / "store.db"))
    cfg = MQTTConfig(
        host=broker.host,
        port=broker.port,
        client_id=f"pub-{prefix}",
        topic_prefix=prefix,
        stats_interval_s=0.3,
    )
    publisher = MQTTPublisher(cfg, DEVICE, store, CollectorRegistry(), _stats, backoff=(0.1, 0.5))
    detections = lambda: [m for m in subscriber.snapshot() if m[0].endswith("/detections")]  # noqa: E731

    async def scenario() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(publisher.run(stop))
        seqs = dict.fromkeys(CAMERAS, 0)
        await _append(store, seqs, 200)  # broker up
        assert await _until(lambda: len(detections()) >= 100, 20)
        for _ in range(2):
            broker.stop()  # events produced while the broker is down wait in the store
            await _append(store, seqs, 200)
            await asyncio.sleep(0.5)
            await asyncio.to_thread(broker.start)
            restarted = time.monotonic()
            before = len(detections())
            await _append(store, seqs, 200)
            # the publisher reconnects and delivers on this connection before the next outage
            assert await _until(lambda n=before: len(detections()) > n + 100, 20)
        assert sum(seqs.values()) == 1000
        unique = lambda: {json.loads(p)["camera"] + str(json.loads(p)["seq"]) for _, p, _r in detections()}  # noqa: E731
        assert await _until(lambda: len(unique()) == 1000, 60), f"got {len(unique())} of 1000"
        replay_s = time.monotonic() - restarted
        assert await _until(lambda: any(t.endswith("/stats") for t, _p, _r in subscriber.snapshot()), 5)
        stop.set()
        await asyncio.wait_for(task, 10)
        return replay_s

    try:
        replay_s = asyncio.run(scenario())
        assert subscriber.wait_for(lambda ms: ms[-1][0].endswith("/status") and ms[-1][1] == b"offline", 5)
    finally:
        subscriber.close()
    received = subscriber.snapshot()
    per_camera: dict[str, list[int]] = defaultdict(list)
    for topic, payload, _retain in received:
        kind = topic.rsplit("/", 1)[1]
        if kind == "detections":
            event = json.loads(payload)
            schemas["detection-event"].validate(event)
            assert topic == f"{prefix}/{DEVICE}/{event['camera']}/detections"
            per_camera[event["camera"]].append(event["seq"])
        elif kind == "status":
            schemas["status"].validate(payload.decode())
        else:
            schemas["stats"].validate(json.loads(payload))
            assert json.loads(payload)["store_backlog"][SINK] >= 0
    for camera, seqs in per_camera.items():
        first_seen = list(dict.fromkeys(seqs))  # at-least-once: a resend may repeat, never reorder
        assert first_seen == sorted(first_seen) == list(range(len(first_seen))), camera
    duplicates = sum(len(s) for s in per_camera.values()) - 1000
    assert store.store.backlog(SINK, "events") == 0
    record_property("replay_after_second_restart_s", round(replay_s, 2))
    record_property("duplicates", duplicates)
    print(f"replay after 2nd restart: {replay_s:.2f} s, duplicates: {duplicates}")
    store.close()


def test_status_is_retained_online_then_offline_on_clean_shutdown(broker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prefix = f"t{uuid.uuid4().hex[:8]}"
    store = AsyncStore(Store(tmp_path / "store.db"))
    cfg = MQTTConfig(
        host=broker.host, port=broker.port, client_id=f"pub-{prefix}", topic_prefix=prefix, protocol="5"
    )
    publisher = MQTTPublisher(cfg, DEVICE, store, CollectorRegistry(), _stats)

    async def scenario() -> bytes:
        stop = asyncio.Event()
        task = asyncio.create_task(publisher.run(stop))
        assert await _until(publisher.client.connected.is_set, 10)
        late = Subscriber(
            broker.port, [f"{prefix}/{DEVICE}/status"], client_id=f"late-{prefix}", persistent=False
        )
        try:
            assert late.wait_for(lambda ms: len(ms) == 1, 5)
            first = late.snapshot()[0]
            assert first[2] is True  # retained
        finally:
            late.close()
        stop.set()
        await asyncio.wait_for(task, 10)
        return first[1]

    assert asyncio.run(scenario()) == b"online"
    after = Subscriber(
        broker.port, [f"{prefix}/{DEVICE}/status"], client_id=f"after-{prefix}", persistent=False
    )
    try:
        assert after.wait_for(lambda ms: [(p, r) for _, p, r in ms] == [(b"offline", True)], 5)
    finally:
        after.close()
    store.close()


def test_last_will_says_offline_when_the_daemon_dies(broker, tmp_path: Path, schemas) -> None:  # type: ignore[no-untyped-def]
    prefix = f"t{uuid.uuid4().hex[:8]}"
    script = f"""
import asyncio
from pathlib import Path
from prometheus_client import CollectorRegistry
from edgeinfer.config import MQTTConfig
from edgeinfer.sinks.mqtt_publisher import MQTTPublisher
from edgeinfer.store.sqlite import AsyncStore, Store
cfg = MQTTConfig(host="127.0.0.1", port={broker.port}, topic_prefix="{prefix}")
store = AsyncStore(Store(Path("{tmp_path / "store.db"}")))
asyncio.run(MQTTPublisher(cfg, "{DEVICE}", store, CollectorRegistry(), dict).run(asyncio.Event()))
"""
    watcher = Subscriber(
        broker.port, [f"{prefix}/{DEVICE}/status"], client_id=f"w-{prefix}", persistent=False
    )
    process = subprocess.Popen([sys.executable, "-c", script])
    try:
        assert watcher.wait_for(lambda ms: [p for _, p, _r in ms] == [b"online"], 20)
        process.kill()  # no goodbye: the broker publishes the will
        process.wait(10)
        assert watcher.wait_for(lambda ms: [p for _, p, _r in ms] == [b"online", b"offline"], 10)
    finally:
        if process.poll() is None:
            process.kill()
        watcher.close()
    for _, payload, _retain in watcher.snapshot():
        schemas["status"].validate(payload.decode())


def test_stop_right_after_a_commit_publishes_everything_before_offline(
    broker, tmp_path: Path, schemas
) -> None:  # type: ignore[no-untyped-def]
    """The daemon's clean stop: the writer commits the last outcomes and wakes the publisher, then stop is
    set at once. Every committed event must reach the broker before ``offline`` (none waits for the next
    start). 450 events: several windows of 100, so the drain has to keep fetching after stop."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    subscriber = Subscriber(
        broker.port, [f"{prefix}/{DEVICE}/+/detections", f"{prefix}/{DEVICE}/status"], client_id=f"c-{prefix}",
        persistent=False,
    )  # fmt: skip
    store = AsyncStore(Store(tmp_path / "store.db"))
    cfg = MQTTConfig(host=broker.host, port=broker.port, client_id=f"pub-{prefix}", topic_prefix=prefix)
    publisher = MQTTPublisher(cfg, DEVICE, store, CollectorRegistry(), _stats)

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(publisher.run(stop))
        assert await _until(publisher.client.connected.is_set, 10)
        assert await _until(
            lambda: subscriber.snapshot()[-1:] == [(f"{prefix}/{DEVICE}/status", b"online", False)], 10
        )
        seqs = dict.fromkeys(CAMERAS, 0)
        rows = []
        for _ in range(450):
            camera = CAMERAS[sum(seqs.values()) % len(CAMERAS)]
            rows.append(event_row(DEVICE, camera, seqs[camera]))
            seqs[camera] += 1
        await store.run(store.store.append, events=rows)
        publisher.wake()  # what the writer's on_commit does
        stop.set()  # and the daemon sets the outputs' stop right after the writer's close
        await asyncio.wait_for(task, 10)

    try:
        asyncio.run(scenario())
        assert subscriber.wait_for(lambda ms: ms[-1][1] == b"offline", 5)
        time.sleep(0.3)
    finally:
        subscriber.close()
    messages = subscriber.snapshot()
    offline = [i for i, m in enumerate(messages) if m[1] == b"offline"]
    events = [(i, json.loads(p)) for i, (t, p, _r) in enumerate(messages) if t.endswith("/detections")]
    for _i, event in events:
        schemas["detection-event"].validate(event)
    assert len(offline) == 1 and all(i < offline[0] for i, _e in events)
    assert len({(e["camera"], e["seq"]) for _i, e in events}) == 450
    assert store.store.backlog(SINK, "events") == 0
    store.close()
