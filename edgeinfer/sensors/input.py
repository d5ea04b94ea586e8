"""Sensor input: durable MQTT subscriptions -> points in the local store, the sensor context, triggers.

The subscription uses a persistent session (client id ``{client_id}-sensors``, ``clean_session=False``,
or for MQTT 5 ``clean_start=False`` with ``session_expiry_s``) and paho's ``manual_ack``: a message is
acknowledged only after the points it gave are committed to the store, so readings published while the
daemon is down are delivered when it returns (within the broker's queue limit) and a crash before the
commit means a redelivery, not a loss. Rejected payloads are acknowledged too (in arrival order, after
the same commit): resending them would not make them valid.

Received messages wait for the store in a queue of at most ``mqtt.sensor_queue_size`` messages, filled on
paho's network thread (so nothing else grows while the event loop or the disk is slow). A QoS 1/2 message
that finds it full holds paho's network thread until there is room: the client stops reading, TCP pushes
back and the broker keeps the rest in the session, so a full queue never loses an acknowledged reading
(the broker's receive maximum, ``min(500, sensor_queue_size)`` on MQTT 5, or its
``max_inflight_messages`` on 3.1.1, should keep the queue from filling at all, but brokers do not always
honour it; Mosquitto 2.0.11 was seen sending 1,800 unacknowledged messages against a receive maximum of
500). Held longer than the keepalive, the broker drops the connection and redelivers whatever was not
acknowledged on the next one. A QoS 0 message that finds the queue full is dropped and counted under
reason ``queue_full``: nothing would redeliver it, and holding back would only move the flood into the
broker. Overflow is logged when it starts and when the queue has room again. On stop, the queue refuses
new messages without acknowledging them (the broker redelivers them next time) and what it holds is
committed and acknowledged.
``edgeinfer_sensor_queue_messages`` is its depth.

Each rejected message is counted in ``edgeinfer_sensor_messages_dropped_total{subscription,reason}`` and
logged at most once per ``log_interval_s`` per subscription (topic and reason; the payload never). A
message that matches no configured subscription (e.g. left in the persistent session by an older config)
is counted under ``subscription="(none)"``, reason ``unknown_topic``. See :mod:`edgeinfer.sensors.parse`
for the formats and the series keys used by the :class:`~edgeinfer.sensors.context.SensorContext` and
:mod:`~edgeinfer.sensors.triggers`. A topic that matches several subscriptions is handled by the first
one in the config.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from edgeinfer.aio import Backoff, wait_any
from edgeinfer.config import MQTTConfig, SensorSubscription
from edgeinfer.errors import ConfigError, StoreError
from edgeinfer.mqtt.client import Message, MQTTClient
from edgeinfer.mqtt.topics import TopicTemplate
from edgeinfer.sensors.context import SensorContext
from edgeinfer.sensors.parse import Parsed, Rejected, check_subscription, parse_payload
from edgeinfer.sensors.triggers import Triggers
from edgeinfer.store.sqlite import AsyncStore

logger = logging.getLogger(__name__)

UNMATCHED = "(none)"
MAX_BATCH = 500
QUEUE_FULL = "queue_full"


class _LogLimiter:
    """At most one log line per key per interval; counts what it held back."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, key: str) -> int | None:
        """None: stay quiet. Otherwise the number of lines held back since the last one."""
        now = time.monotonic()
        if key in self._last and now - self._last[key] < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)


class _Inbox:
    """Messages from paho's network thread to the event loop, at most ``size`` of them.

    ``put`` refuses a QoS 0 message when full and waits for room with a QoS 1/2 one (see the module
    docstring); after ``close`` it refuses everything and releases the waiters.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.peak = 0  # the most messages ever waiting
        self.overflowing = False  # set by the first full put, cleared when there is room again
        self.refused_since = 0  # QoS 0 messages dropped during this overflow
        self.closed = False
        self._messages: collections.deque[Message] = collections.deque()
        self._room = threading.Condition(threading.Lock())
        self.ready = asyncio.Event()  # set (from any thread, via the loop) when a message was queued
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def __len__(self) -> int:
        return len(self._messages)

    def put(self, message: Message) -> tuple[bool, bool]:
        """(queued, first full put of an overflow). Any thread but the event loop's: it may block."""
        first = False
        with self._room:
            while len(self._messages) >= self.size and not self.closed:
                if not self.overflowing:
                    first = self.overflowing = True
                if message.qos == 0:
                    self.refused_since += 1
                    return False, first
                self._room.wait(timeout=1.0)
            if self.closed:
                return False, first
            self._messages.append(message)
            self.peak = max(self.peak, len(self._messages))
            wake = len(self._messages) == 1
        if wake and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                self._loop.call_soon_threadsafe(self.ready.set)
        return True, first

    def take(self, limit: int) -> tuple[list[Message], int | None]:
        """Up to ``limit`` messages, oldest first, and the count of QoS 0 messages dropped during an
        overflow that ended (None while none did). Event loop only."""
        self.ready.clear()
        with self._room:
            batch = [self._messages.popleft() for _ in range(min(limit, len(self._messages)))]
            ended = None
            if self.overflowing and len(self._messages) <= self.size // 2:
                ended, self.overflowing, self.refused_since = self.refused_since, False, 0
            if batch:
                self._room.notify_all()
        return batch, ended

    def close(self) -> None:
        with self._room:
            self.closed = True
            self._room.notify_all()


@dataclass(frozen=True, slots=True)
class _Route:
    sub: SensorSubscription
    template: TopicTemplate
    label: str


class SensorInput:
    """The ``mqtt-sensors`` component."""

    name = "mqtt-sensors"

    def __init__(
        self,
        cfg: MQTTConfig,
        device: str,
        store: AsyncStore,
        registry: CollectorRegistry,
        context: SensorContext,
        triggers: Triggers | None = None,
        *,
        log_interval_s: float = 60.0,
        backoff: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.context = context
        self.triggers = triggers
        self.routes: list[_Route] = []
        for sub in cfg.sensors:
            try:
                check_subscription(sub)
                self.routes.append(_Route(sub, TopicTemplate(sub.topic), sub.topic))
            except ValueError as exc:
                raise ConfigError(f"mqtt.sensors: {exc}") from None
        self.client = MQTTClient(
            cfg,
            client_id=f"{cfg.client_id or f'edgeinfer-{device}'}-sensors",
            persistent=True,
            manual_ack=True,
            on_connect=self._on_connect,
            on_message_thread=self._on_message,
            receive_maximum=min(MAX_BATCH, cfg.sensor_queue_size),
            backoff=backoff,
        )
        self._inbox = _Inbox(cfg.sensor_queue_size)
        self._log = _LogLimiter(log_interval_s)
        self._subscribe_task: asyncio.Task[None] | None = None
        self.accepted = Counter(
            "edgeinfer_sensor_messages_accepted",
            "Sensor messages stored, per subscription.",
            ["subscription"],
            registry=registry,
        )
        self.points = Counter(
            "edgeinfer_sensor_points",
            "Points stored from sensor messages.",
            ["subscription"],
            registry=registry,
        )
        self.dropped = Counter(
            "edgeinfer_sensor_messages_dropped",
            "Sensor messages dropped (invalid, or the queue was full), per subscription and reason.",
            ["subscription", "reason"],
            registry=registry,
        )
        self.queued = Gauge(
            "edgeinfer_sensor_queue_messages", "Sensor messages waiting to be stored.", registry=registry
        )
        self.queued.set_function(lambda: len(self._inbox))

    # ----------------------------------------------------------------- MQTT side

    def _on_connect(self) -> None:
        self._subscribe_task = asyncio.create_task(self._subscribe())

    async def _subscribe(self) -> None:
        topics: list[tuple[str, int]] = [(route.template.filter, route.sub.qos) for route in self.routes]
        if not topics:
            return
        try:
            reasons = await self.client.subscribe(topics)
        except Exception as exc:  # the connection dropped: the next connect subscribes again
            logger.warning("MQTT sensors: subscribe failed: %s", exc)
            return
        for (topic, _), reason in zip(topics, reasons, strict=False):
            if reason.is_failure:
                logger.error("MQTT sensors: the broker refused the subscription %s: %s", topic, reason)

    def route(self, topic: str) -> _Route | None:
        return next((r for r in self.routes if r.template.match(topic) is not None), None)

    def _on_message(self, message: Message) -> None:
        """On paho's network thread; blocks while the queue is full and the message is QoS 1/2."""
        queued, first = self._inbox.put(message)
        if first:
            logger.warning(
                "MQTT sensors: the queue is full (%d messages waiting to be stored): holding back QoS 1/2 "
                "messages and dropping QoS 0 ones until it has room (counted as reason=%s)",
                self._inbox.size, QUEUE_FULL,
            )  # fmt: skip
        if queued or self._inbox.closed:  # refused while stopping: not acked, the broker redelivers it
            return
        route = self.route(message.topic)
        self.dropped.labels(route.label if route is not None else UNMATCHED, QUEUE_FULL).inc()

    # ----------------------------------------------------------------- processing

    async def run(self, stop: asyncio.Event) -> None:
        self._inbox.bind(asyncio.get_running_loop())
        client_stop = asyncio.Event()
        connection = asyncio.create_task(self.client.run(client_stop), name="mqtt-sensors-connection")
        try:
            while not stop.is_set():
                if not len(self._inbox):
                    await wait_any(stop, self._inbox.ready)
                batch = self._take_batch()
                if batch:
                    await self._process(batch, stop)
            self._inbox.close()
            while len(self._inbox):  # received before stop: commit and ack them
                await self._process(self._take_batch(), stop)
        finally:
            self._inbox.close()  # releases paho's thread if it waits for room, so the client can stop
            client_stop.set()
            await connection

    def _take_batch(self) -> list[Message]:
        batch, refused = self._inbox.take(MAX_BATCH)
        if refused is not None:
            logger.warning("MQTT sensors: the queue has room again; %d QoS 0 messages were dropped", refused)
        return batch

    def parse(self, message: Message) -> tuple[str, Parsed | None]:
        """(subscription label, points) or (label, None) when the message was dropped (and counted)."""
        route = self.route(message.topic)
        label = route.label if route is not None else UNMATCHED
        try:
            if route is None:
                raise Rejected("unknown_topic", "no subscription matches the topic")
            return label, parse_payload(
                route.sub, route.template, message.topic, message.payload, now_ns=message.received_ns,
                max_bytes=self.cfg.max_payload_bytes,
            )  # fmt: skip
        except Rejected as exc:
            self.dropped.labels(label, exc.reason).inc()
            held = self._log.allow(label)
            if held is not None:
                logger.warning(
                    "MQTT sensors: dropped a message on %r (subscription %s): %s: %s "
                    "(%d more dropped since the last report)",
                    message.topic[:200], label, exc.reason, exc.detail[:200], held,
                )  # fmt: skip
            return label, None

    async def _process(self, batch: list[Message], stop: asyncio.Event) -> None:
        results = [self.parse(message) for message in batch]
        lines = [line for _, parsed in results if parsed is not None for line in parsed.lines]
        backoff = Backoff(0.5, 10.0)
        while lines:
            try:
                await self.store.run(self.store.store.append, points=lines)
                break
            except (StoreError, sqlite3.Error) as exc:  # the store should raise StoreError only
                if stop.is_set():
                    return  # not acked: the broker redelivers them next time
                logger.error("MQTT sensors: cannot store %d readings (%s); retrying", len(lines), exc)
                await wait_any(stop, within=backoff.next_delay())
        for message in batch:
            try:
                message.ack()
            except Exception as exc:  # that connection is gone; the broker redelivers on the next one
                logger.debug("MQTT sensors: ack of message %d failed: %s", message.mid, exc)
        for (label, parsed), _message in zip(results, batch, strict=True):
            if parsed is None:
                continue
            self.accepted.labels(label).inc()
            self.points.labels(label).inc(len(parsed.lines))
            self.context.update(parsed.values)
            if self.triggers is not None:
                self.triggers.check(parsed.values)
