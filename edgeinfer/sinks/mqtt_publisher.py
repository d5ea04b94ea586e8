"""Drains the store's ``events`` stream to MQTT: at-least-once, oldest first, per-camera order kept.

Topics (``{prefix}`` defaults to ``edgeinfer``):

- ``{prefix}/{device}/{camera}/detections``: the event JSON, configured QoS (default 1), not retained;
- the store's ``messages`` stream (tracking: ``{camera}/objects`` lifecycle, retained ``.../count``
  counts), each at ``{prefix}/{device}/{topic}`` with its own retain flag, configured QoS; drained the
  same way as events, alongside them, with a window and a cursor of its own;
- ``{prefix}/{device}/status``: ``online`` (retained, QoS 1) after each connect, ``offline`` as the
  retained last will and on clean shutdown;
- ``{prefix}/{device}/stats``: every ``stats_interval_s``, the daemon's stats plus ``store_backlog``,
  QoS 0, not retained (stats are not stored while the broker is away);
- with ``homeassistant:``, the discovery configs of :mod:`edgeinfer.sinks.homeassistant` (retained, QoS 1)
  after each connect, and empty retained payloads for the entities of cameras no longer configured.

Events go out in store order over one connection with a bounded window of unacknowledged messages. The
store cursor moves to the highest id below which every message was acknowledged (PUBACK). When the
connection drops, everything after the cursor is resent in order on the next connection, so a subscriber
sees every event at least once and, per camera, in order (a resend can repeat events it already saw).
A message the broker refuses for good (MQTT 5 reason code such as "payload format invalid") moves to
the dead-letter table instead of blocking the stream.

Refusals by the broker's ACL (a device or prefix the broker's ACL does not grant this client):

- MQTT 5: Mosquitto 2 answers the PUBACK with reason code 0x87 "not authorized". The event is
  dead-lettered, never resent; ``edgeinfer_mqtt_publish_refused_total{kind=event|status,reason}`` counts
  it, and a log line says so at most once per ``log_interval_s`` (with the count held back).
- MQTT 3.1.1 has no reason codes: Mosquitto 2 acknowledges the message and drops it. To find out, the
  publisher subscribes to its own status topic on each connection and looks for its ``online`` coming back
  (live, not the retained copy); when it does not within ``ECHO_TIMEOUT_S``, it logs that once per state
  change and counts ``kind="status", reason="not_delivered"``. (No echo also means the client may not read
  its own status topic; an ACL granting ``readwrite {prefix}/{device}/#`` allows both.) Events are not
  held back: the broker acknowledged them. Use ``protocol: "5"`` to have each refused event dead-lettered.

On stop (the daemon sets it after every outcome was committed) the publisher keeps fetching and
publishing until the store has nothing left for it or ``drain_s`` passed, then says ``offline``: a clean
stop with the broker up leaves no event for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any, cast

from prometheus_client import CollectorRegistry, Counter, Gauge

from edgeinfer.aio import wait_any
from edgeinfer.config import MQTTConfig
from edgeinfer.mqtt.client import ConnectionLost, Message, MQTTClient, PublishRejected, Will
from edgeinfer.sinks.homeassistant import Discovery
from edgeinfer.store.sqlite import AsyncStore, OutboxRow, Stream
from edgeinfer.timefmt import rfc3339_now

logger = logging.getLogger(__name__)

SINK = "mqtt"
IDLE_POLL_S = 0.1
ECHO_TIMEOUT_S = 5.0
# On stop: keep publishing what the store holds for this long at most, then say offline (0.75 s) and
# disconnect (0.5 s): together within the daemon's drain deadline for outputs (3 s).
DRAIN_S = 1.5
# After subscribing to the discovery topics: how long to wait for the broker's retained configs (it sends
# them right after the SUBACK) before clearing those no longer configured.
DISCOVERY_SETTLE_S = 1.0


class MQTTPublisher:
    """The ``mqtt`` component: events, status and stats out to the broker."""

    name = "mqtt-publisher"
    sink = SINK

    def __init__(
        self,
        cfg: MQTTConfig,
        device: str,
        store: AsyncStore,
        registry: CollectorRegistry,
        stats: Callable[[], dict[str, Any]],
        *,
        backlog_sinks: tuple[tuple[str, str], ...] = ((SINK, "events"),),
        window: int = 100,
        backoff: tuple[float, float] = (0.5, 30.0),
        log_interval_s: float = 60.0,
        drain_s: float = DRAIN_S,
        discovery: Discovery | None = None,
    ) -> None:
        self.cfg = cfg
        self.discovery = discovery
        self._retained_configs: set[str] = set()  # discovery configs the broker retains for this node
        self.device = device
        self.store = store
        self.stats = stats
        self.backlog_sinks = backlog_sinks
        self.window = window
        self.drain_s = drain_s
        self.base = f"{cfg.topic_prefix}/{device}"
        self.status_topic = f"{self.base}/status"
        self._wake = asyncio.Event()
        self._echo = asyncio.Event()  # our own "online" came back (MQTT 3.1.1 delivery check)
        self.delivering: bool | None = None  # the last delivery check's result (None: not checked)
        self.log_interval_s = log_interval_s
        self._refusal_logged = -float("inf")
        self._refusals_held = 0
        self.say_offline = True  # False: a restart in-process follows, the next run says `online` again
        self.client = MQTTClient(
            cfg,
            client_id=cfg.client_id or f"edgeinfer-{device}",
            will=Will(self.status_topic, "offline", qos=1, retain=True),
            on_message=self._on_message,
            max_inflight=window,
            backoff=backoff,
        )
        self._published = Counter(
            "edgeinfer_mqtt_events_published", "Events acknowledged by the broker.", registry=registry
        )
        self._dead = Counter(
            "edgeinfer_mqtt_events_dead_lettered", "Events the broker refused for good.", registry=registry
        )
        self._connected = Gauge(
            "edgeinfer_mqtt_connected", "1 while connected to the broker.", registry=registry
        )
        self.refused = Counter(
            "edgeinfer_mqtt_publish_refused",
            "Messages the broker refused (MQTT 5 reason code), or with MQTT 3.1.1 connections whose "
            "status message it did not deliver back (reason not_delivered).",
            ["kind", "reason"],
            registry=registry,
        )
        self._backlog = Gauge(
            "edgeinfer_mqtt_backlog_events", "Events waiting in the store for the broker.", registry=registry
        )

    @property
    def connected(self) -> bool:
        """Read-only, for the status line: connected to the broker now."""
        return self.client.connected.is_set()

    async def count_backlog(self) -> int:
        """The events not yet acknowledged by the broker; refreshes ``edgeinfer_mqtt_backlog_events``."""
        backlog = await self.store.run(self.store.store.backlog, SINK, "events")
        self._backlog.set(backlog)
        return backlog

    def wake(self) -> None:
        """Optional: tell the publisher new events were stored (it also polls every 0.1 s)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        await self.store.run(self.store.store.register_sink, SINK, "events")
        await self.store.run(self.store.store.register_sink, SINK, "messages")
        client_stop = asyncio.Event()
        connection = asyncio.create_task(self.client.run(client_stop), name="mqtt-publisher-connection")
        stats = asyncio.create_task(self._stats_loop(stop), name="mqtt-publisher-stats")
        try:
            while not stop.is_set():
                if not await wait_any(self.client.connected, stop):
                    continue
                if stop.is_set():
                    break
                self._connected.set(1)
                await self._session(stop)
                self._connected.set(0)
                if self.client.connected.is_set():  # a transient refusal (e.g. quota): resend after a pause
                    await wait_any(stop, self.client.lost, within=1.0)
        finally:
            stats.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stats
            if self.say_offline:
                await self._say_offline()
            client_stop.set()
            await connection
            self._connected.set(0)

    # ----------------------------------------------------------------- one connection

    async def _session(self, stop: asyncio.Event) -> None:
        """Publish from the cursor until the connection drops or stop is set. After stop it goes on
        publishing what the store holds (the daemon flushed every outcome to it before setting stop)
        until nothing is left or ``drain_s`` passed, so a clean stop leaves nothing unsent."""
        check: asyncio.Task[None] | None = None
        if self.cfg.protocol != "5":  # no reason codes: see whether the broker delivers what we send
            self._echo.clear()
            try:
                reasons = await self.client.subscribe([(self.status_topic, 1)])
            except ConnectionLost:
                return
            if not any(reason.is_failure for reason in reasons):
                check = asyncio.create_task(self._check_delivery(), name="mqtt-publisher-delivery-check")
        status = self._publish_quietly(self.status_topic, "online", qos=1, retain=True)
        announce = None
        if self.discovery is not None:
            announce = asyncio.create_task(self._announce(self.discovery), name="mqtt-publisher-discovery")
        try:
            await asyncio.gather(self._publish_stream("events", stop), self._publish_stream("messages", stop))
        finally:
            if check is not None:
                check.cancel()
            if announce is not None:
                announce.cancel()
            if status is not None and not status.done():
                status.cancel()

    def _topic(self, row: OutboxRow) -> str:
        if row.topic is not None:  # the messages stream
            return f"{self.base}/{row.topic}"
        return f"{self.base}/{row.camera}/detections"

    async def _publish_stream(self, stream: Stream, stop: asyncio.Event) -> None:
        cursor = await self.store.run(self.store.store.cursor, SINK, stream)
        after = cursor
        inflight: dict[int, tuple[OutboxRow, asyncio.Future[None]]] = {}
        deadline: float | None = None
        while True:
            if stop.is_set() and deadline is None:
                deadline = time.monotonic() + self.drain_s
            room = self.window - len(inflight)
            if room > 0 and (deadline is None or time.monotonic() < deadline):
                rows = await self.store.run(self.store.store.pending, SINK, stream, room, after)
                try:
                    for row in rows:
                        future = self.client.publish(self._topic(row), row.body, self.cfg.qos, row.retain)
                        inflight[row.id] = (row, future)
                        after = row.id
                except ConnectionLost:
                    return
            if not inflight:
                if deadline is not None or not self.client.connected.is_set():
                    break
                self._wake.clear()
                await wait_any(self._wake, stop, self.client.lost, within=IDLE_POLL_S)
                continue
            timeout = IDLE_POLL_S if deadline is None else max(0.0, deadline - time.monotonic())
            await asyncio.wait(
                [f for _, f in inflight.values()], timeout=timeout, return_when="FIRST_COMPLETED"
            )
            cursor, lost = await self._settle(stream, inflight, cursor)
            if lost or (deadline is not None and time.monotonic() >= deadline):
                break

    async def _settle(
        self, stream: Stream, inflight: dict[int, tuple[OutboxRow, asyncio.Future[None]]], cursor: int
    ) -> tuple[int, bool]:
        """Pop the acknowledged prefix of the window, move the cursor. Returns (cursor, connection lost)."""
        done_upto, lost, delivered = cursor, False, 0
        dead: list[tuple[OutboxRow, PublishRejected]] = []
        for row_id, (row, future) in list(inflight.items()):
            if not future.done():
                break
            exc = future.exception()
            if isinstance(exc, PublishRejected):
                dead.append((row, exc))
            elif exc is not None:
                lost = True
                break
            else:
                delivered += 1
            del inflight[row_id]
            done_upto = row_id
        kind = "event" if stream == "events" else "message"
        for row, exc in dead:
            self._refusal(kind, exc, f"{kind} {row.id}")
            await self.store.run(self.store.store.dead_letter, SINK, stream, [row], str(exc))
            self._dead.inc()
        if done_upto > cursor:
            await self.store.run(self.store.store.ack, SINK, stream, done_upto)
            if stream == "events":
                self._published.inc(delivered)
        return done_upto, lost

    # ----------------------------------------------------------------- refusals

    def _refusal(self, kind: str, exc: PublishRejected, what: str) -> None:
        """Count a refused message; log at most once per log_interval_s (with what was held back)."""
        self.refused.labels(kind, exc.reason).inc()
        now = time.monotonic()
        if now - self._refusal_logged < self.log_interval_s:
            self._refusals_held += 1
            return
        logger.error(
            "MQTT broker %s:%d refused %s for good (%s): an ACL may not grant this client %s/#; "
            "dead-lettered, not resent (%d more refused since the last report)",
            self.cfg.host, self.cfg.port, what, exc, self.base, self._refusals_held,
        )  # fmt: skip
        self._refusal_logged, self._refusals_held = now, 0

    def _on_message(self, message: Message) -> None:
        if message.topic == self.status_topic and message.payload == b"online" and not message.retain:
            self._echo.set()
        elif self.discovery is not None and message.retain and self.discovery.is_ours(message.topic):
            if message.payload:
                self._retained_configs.add(message.topic)
            else:
                self._retained_configs.discard(message.topic)

    async def _announce(self, discovery: Discovery) -> None:
        """Home Assistant discovery: publish every entity's config, then clear the ones the broker still
        retains for this node that the config no longer has (a camera or label removed)."""
        self._retained_configs.clear()
        try:
            reasons = await self.client.subscribe([(discovery.subscription, 1)])
        except ConnectionLost:
            return
        for topic, payload in discovery.configs().items():
            self._publish_quietly(topic, payload, qos=1, retain=True)
        if any(reason.is_failure for reason in reasons):
            logger.warning(
                "Home Assistant discovery: cannot read %s; old entities stay", discovery.subscription
            )
            return
        await asyncio.sleep(DISCOVERY_SETTLE_S)
        stale = discovery.stale(self._retained_configs)
        for topic in stale:
            self._publish_quietly(topic, "", qos=1, retain=True)
        if stale:
            logger.info("Home Assistant discovery: removed %d entit(ies) no longer configured", len(stale))

    async def _check_delivery(self) -> None:
        delivered = await wait_any(self._echo, within=ECHO_TIMEOUT_S)
        if not self.client.connected.is_set():
            return  # the connection dropped meanwhile: the next one checks again
        if not delivered:
            self.refused.labels("status", "not_delivered").inc()
        if delivered == self.delivering:
            return
        if not delivered:
            logger.error(
                "MQTT broker %s:%d acknowledged %s but did not deliver it back within %.0f s: it probably "
                "drops this client's publishes (an ACL not granting %s/#; MQTT 3.1.1 cannot report "
                "refusals, protocol 5 can), or the client may not read its own status topic",
                self.cfg.host, self.cfg.port, self.status_topic, ECHO_TIMEOUT_S, self.base,
            )  # fmt: skip
        elif self.delivering is False:
            logger.warning(
                "MQTT broker %s:%d delivers this client's messages again", self.cfg.host, self.cfg.port
            )
        self.delivering = delivered

    # ----------------------------------------------------------------- status and stats

    def _publish_quietly(
        self, topic: str, payload: str, *, qos: int, retain: bool
    ) -> asyncio.Future[None] | None:
        try:
            future = self.client.publish(topic, payload, qos, retain)
        except ConnectionLost:
            return None
        future.add_done_callback(lambda f: self._status_done(f, topic))
        return future

    def _status_done(self, future: asyncio.Future[None], topic: str) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if isinstance(exc, PublishRejected):
            self._refusal("status", exc, topic)

    async def _say_offline(self) -> None:
        future = self._publish_quietly(self.status_topic, "offline", qos=1, retain=True)
        if future is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(future, 0.75)

    async def _stats_loop(self, stop: asyncio.Event) -> None:
        while not await wait_any(stop, within=self.cfg.stats_interval_s):
            if not self.client.connected.is_set():
                continue
            try:
                payload = await self.stats_payload()
            except Exception:
                logger.exception("MQTT stats: building the stats payload failed; skipped")
                continue
            self._publish_quietly(f"{self.base}/stats", payload, qos=0, retain=False)

    async def stats_payload(self) -> str:
        backlog = {}
        for sink, stream in self.backlog_sinks:
            backlog[sink] = await self.store.run(self.store.store.backlog, sink, cast(Stream, stream))
        body = {**self.stats(), "device": self.device, "ts": rfc3339_now(), "store_backlog": backlog}
        return json.dumps(body, default=str, allow_nan=False)
