"""Test-side MQTT parts: a plain paho subscriber/publisher (what another service would run) and events."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edgeinfer.store.sqlite import EventRow


class Subscriber:
    """A paho client in its own thread (paho reconnects it), collecting (topic, payload) pairs."""

    def __init__(
        self, port: int, topics: list[str], client_id: str, *, persistent: bool = True, tls: dict | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:  # fmt: skip
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent
        )
        if tls is not None:
            self.client.tls_set(**tls)
        if auth is not None:
            self.client.username_pw_set(*auth)
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        self.client.on_connect = lambda c, _u, _f, _r, _p: c.subscribe([(t, 1) for t in topics])
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def snapshot(self) -> list[tuple[str, bytes, bool]]:
        with self._lock:
            return list(self.messages)

    def wait_for(self, predicate: Callable[[list[tuple[str, bytes, bool]]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.snapshot()):
                return True
            time.sleep(0.05)
        return predicate(self.snapshot())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_all(
    port: int, messages: list[tuple[str, bytes]], qos: int = 1, *, tls: dict | None = None,
    auth: tuple[str, str] | None = None, host: str = "127.0.0.1",
) -> None:  # fmt: skip
    """Publish with QoS 1 and wait until the broker acknowledged every message."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    if tls is not None:
        client.tls_set(**tls)
    if auth is not None:
        client.username_pw_set(*auth)
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=qos) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=60)
    finally:
        client.disconnect()
        client.loop_stop()


def event_row(device: str, camera: str, seq: int) -> EventRow:
    ts_ns = time.time_ns()
    ts = datetime.fromtimestamp(ts_ns / 1e9, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    body = {
        "device": device,
        "camera": camera,
        "seq": seq,
        "ts": ts,
        "model": "yolov8n-int8",
        "detections": [{"label": "person", "class_id": 0, "score": 0.91, "box": [10.0, 20.0, 110.0, 220.0]}],
        "latency_ms": {"e2e": 31.5, "queue": 2.0, "preprocess": 3.1, "inference": 21.7, "postprocess": 1.2},
        "batch_size": 2,
    }
    return EventRow(camera, ts_ns, json.dumps(body))
