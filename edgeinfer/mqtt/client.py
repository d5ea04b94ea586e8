"""An asyncio wrapper around paho-mqtt 2.x (callback API v2), MQTT 3.1.1 and 5.

The integration follows aiomqtt's approach: the blocking ``connect`` (TCP and TLS handshake) runs in an
executor of its own (one thread a client, so outages and reconnects never add threads), paho's network loop runs in its own thread (``loop_start``), and paho callbacks do nothing but
schedule work on the event loop with ``loop.call_soon_threadsafe``. Each connection is a fresh paho client
with paho's own reconnect turned off; :meth:`MQTTClient.run` reconnects with exponential backoff and
jitter, so what was in flight on a lost connection is failed and resent by the owner (who knows what is
durable), never silently replayed by paho.

The password is handed to paho and never logged; connection errors are logged with host, port and reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edgeinfer.aio import Backoff, wait_any
from edgeinfer.config import MQTTConfig
from edgeinfer.errors import SinkError

logger = logging.getLogger(__name__)

# PUBACK reason codes (MQTT 5) that no resend can fix: the message is parked instead.
PERMANENT_PUBACK_CODES = {0x87, 0x90, 0x95, 0x99}


class ConnectionLost(SinkError):
    """The connection dropped before the broker acknowledged the message."""


class PublishRejected(SinkError):
    """The broker refused a message for good (MQTT 5 PUBACK reason code)."""

    def __init__(self, message: str, reason: str = "refused") -> None:
        super().__init__(message)
        self.reason = reason  # the reason code's name as a metric label, e.g. "not_authorized"


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: str
    qos: int
    retain: bool


@dataclass(frozen=True, slots=True)
class Message:
    """A received message; ``ack()`` sends its PUBACK when the client uses manual acks."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    received_ns: int  # wall-clock receive time, strictly increasing per client
    _client: paho.Client
    retain: bool = False  # set only for a retained message sent because a subscription was just made

    def ack(self) -> None:
        if self.qos > 0:
            self._client.ack(self.mid, self.qos)


def configure_paho(client: paho.Client, cfg: MQTTConfig) -> None:
    """Credentials and TLS from the config (shared with ``edgeinfer watch``)."""
    if cfg.username is not None:
        password = cfg.password.get_secret_value() if cfg.password is not None else None
        client.username_pw_set(cfg.username, password)
    if cfg.tls is not None:
        client.tls_set(
            ca_certs=str(cfg.tls.ca_file) if cfg.tls.ca_file else None,
            certfile=str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
            keyfile=str(cfg.tls.key_file) if cfg.tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        client.tls_insecure_set(cfg.tls.insecure)


def protocol_of(cfg: MQTTConfig) -> MQTTProtocolVersion:
    return MQTTProtocolVersion.MQTTv5 if cfg.protocol == "5" else MQTTProtocolVersion.MQTTv311


class MQTTClient:
    """One logical MQTT client that stays connected while :meth:`run` runs.

    ``on_connect`` is called on the event loop after each successful CONNACK (subscribe there);
    ``on_message`` on the event loop for each received message. ``on_message_thread``, where given, is
    called instead on paho's network thread, as each message arrives: it must be quick and thread-safe
    (a bounded hand-over to the loop: one loop callback per message is itself an unbounded queue).
    """

    def __init__(
        self,
        cfg: MQTTConfig,
        *,
        client_id: str,
        persistent: bool = False,
        manual_ack: bool = False,
        will: Will | None = None,
        on_connect: Callable[[], None] | None = None,
        on_message: Callable[[Message], None] | None = None,
        on_message_thread: Callable[[Message], None] | None = None,
        max_inflight: int = 20,
        receive_maximum: int | None = None,
        backoff: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        self.cfg = cfg
        self.client_id = client_id
        self.persistent = persistent
        self.manual_ack = manual_ack
        self.will = will
        self.on_connect = on_connect
        self.on_message = on_message
        self.on_message_thread = on_message_thread
        self.max_inflight = max_inflight
        self.receive_maximum = receive_maximum
        self.backoff = backoff
        self.connected = asyncio.Event()
        self.connections = 0
        self._lost = asyncio.Event()
        self._client: paho.Client | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connack: asyncio.Future[ReasonCode] | None = None
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._subscribed: dict[int, asyncio.Future[list[ReasonCode]]] = {}
        self._last_received_ns = 0
        self._executor: ThreadPoolExecutor | None = None  # made by run()

    # ----------------------------------------------------------------- public

    @property
    def lost(self) -> asyncio.Event:
        """Set when the current connection dropped (cleared on each connect)."""
        return self._lost

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, reconnect with backoff while the connection drops, disconnect cleanly on stop."""
        self._loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"edgeinfer.mqtt.{self.client_id}")
        backoff = Backoff(*self.backoff)
        try:
            while not stop.is_set():
                try:
                    await self._connect_once()
                except SinkError as exc:
                    delay = backoff.next_delay()
                    logger.warning("MQTT %s: %s; retrying in %.1f s", self.client_id, exc, delay)
                    await wait_any(stop, within=delay)
                    continue
                backoff.reset()
                self.connections += 1
                logger.info("MQTT %s: connected to %s:%d", self.client_id, self.cfg.host, self.cfg.port)
                if self.on_connect is not None:
                    self.on_connect()
                await wait_any(stop, self._lost)
                if not stop.is_set():
                    logger.warning("MQTT %s: connection lost, reconnecting", self.client_id)
                    await self._teardown(clean=False)
                    await wait_any(stop, within=backoff.next_delay())
        finally:
            await self._teardown(clean=True)
            self._executor.shutdown(wait=False)

    def publish(
        self, topic: str, payload: str | bytes, qos: int, retain: bool = False
    ) -> asyncio.Future[None]:
        """Queue a message; the future resolves on PUBACK (QoS 1), PUBCOMP (QoS 2) or on send (QoS 0)."""
        client = self._client
        if client is None or not self.connected.is_set():
            raise ConnectionLost("not connected")
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise ConnectionLost(f"publish failed: {paho.error_string(info.rc)}")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[info.mid] = future
        return future

    async def subscribe(self, topics: list[tuple[str, int]]) -> list[ReasonCode]:
        client = self._client
        if client is None:
            raise ConnectionLost("not connected")
        rc, mid = client.subscribe(topics)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise ConnectionLost(f"subscribe failed: {paho.error_string(rc)}")
        future: asyncio.Future[list[ReasonCode]] = asyncio.get_running_loop().create_future()
        self._subscribed[mid] = future
        try:
            return await asyncio.wait_for(future, 10.0)
        except TimeoutError:
            raise ConnectionLost("no SUBACK") from None

    # ----------------------------------------------------------------- connection

    def _new_client(self) -> paho.Client:
        v5 = self.cfg.protocol == "5"
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=None if v5 else not self.persistent,
            protocol=protocol_of(self.cfg),
            reconnect_on_failure=False,
            manual_ack=self.manual_ack,
        )
        configure_paho(client, self.cfg)
        if self.will is not None:
            client.will_set(self.will.topic, self.will.payload, qos=self.will.qos, retain=self.will.retain)
        client.max_inflight_messages_set(self.max_inflight)
        client.max_queued_messages_set(0)
        client.on_connect = self._cb_connect
        client.on_disconnect = self._cb_disconnect
        client.on_publish = self._cb_publish
        client.on_message = self._cb_message
        client.on_subscribe = self._cb_subscribe
        return client

    def _connect_properties(self) -> Properties | None:
        if self.cfg.protocol != "5":
            return None
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho's Properties has no annotations
        props.SessionExpiryInterval = self.cfg.session_expiry_s if self.persistent else 0
        if self.receive_maximum is not None:
            props.ReceiveMaximum = self.receive_maximum
        return props

    async def _connect_once(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            client = self._new_client()
        except (OSError, ssl.SSLError, ValueError) as exc:  # e.g. an unreadable CA or key file
            raise SinkError(f"cannot set up the client for {self.cfg.host}:{self.cfg.port}: {exc}") from None
        self._lost.clear()
        self._connack = loop.create_future()
        self._client = client
        clean_start: Any = (
            (not self.persistent) if self.cfg.protocol == "5" else paho.MQTT_CLEAN_START_FIRST_ONLY
        )
        try:
            await loop.run_in_executor(
                self._executor,
                lambda: client.connect(
                    self.cfg.host,
                    self.cfg.port,
                    self.cfg.keepalive,
                    clean_start=clean_start,
                    properties=self._connect_properties(),
                ),
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            self._client = None
            raise SinkError(f"cannot connect to {self.cfg.host}:{self.cfg.port}: {exc}") from None
        client.loop_start()
        try:
            reason = await asyncio.wait_for(self._connack, timeout=max(5.0, float(self.cfg.keepalive)))
        except TimeoutError:
            await self._teardown(clean=False)
            raise SinkError(f"no CONNACK from {self.cfg.host}:{self.cfg.port}") from None
        except ConnectionLost as exc:
            await self._teardown(clean=False)
            raise SinkError(f"connection to {self.cfg.host}:{self.cfg.port} closed: {exc}") from None
        if reason.is_failure:
            await self._teardown(clean=False)
            raise SinkError(f"broker {self.cfg.host}:{self.cfg.port} refused the connection: {reason}")
        self.connected.set()

    async def _teardown(self, *, clean: bool) -> None:
        client = self._client
        if client is not None and clean and client.is_connected():
            client.disconnect()  # a clean DISCONNECT: the broker discards the will
            await wait_any(self._lost, within=0.5)
        self._client = None
        self.connected.clear()
        self._fail_pending(ConnectionLost("connection closed"))
        if client is None:
            return
        with contextlib.suppress(Exception):
            client.disconnect()
        await asyncio.get_running_loop().run_in_executor(self._executor, client.loop_stop)

    def _fail_pending(self, exc: SinkError) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(exc)
                future.exception()  # mark retrieved: owners may have given up on it
        subscribed, self._subscribed = self._subscribed, {}
        for waiter in subscribed.values():
            if not waiter.done():
                waiter.set_exception(exc)
                waiter.exception()

    # ----------------------------------------------------------------- paho callbacks (paho's thread)

    def _schedule(self, client: paho.Client, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to tell
            loop.call_soon_threadsafe(self._if_current, client, fn, *args)

    def _if_current(self, client: paho.Client, fn: Callable[..., None], *args: Any) -> None:
        if client is self._client:
            fn(*args)

    def _cb_connect(self, client: paho.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self._schedule(client, self._on_connack, reason)

    def _cb_disconnect(self, client: paho.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self._schedule(client, self._on_lost, reason)

    def _cb_publish(self, client: paho.Client, _u: Any, mid: int, reason: ReasonCode, _p: Any) -> None:
        self._schedule(client, self._on_published, mid, reason)

    def _cb_message(self, client: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        now = time.time_ns()
        self._last_received_ns = now = max(now, self._last_received_ns + 1)
        message = Message(msg.topic, bytes(msg.payload), msg.qos, msg.mid, now, client, bool(msg.retain))
        if self.on_message_thread is not None:
            if client is self._client:  # not from a connection already torn down
                self.on_message_thread(message)
            return
        self._schedule(client, self._on_received, message)

    def _cb_subscribe(
        self, client: paho.Client, _u: Any, mid: int, reasons: list[ReasonCode], _p: Any
    ) -> None:
        self._schedule(client, self._on_suback, mid, reasons)

    # ----------------------------------------------------------------- on the event loop

    def _on_connack(self, reason: ReasonCode) -> None:
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(reason)

    def _on_lost(self, reason: ReasonCode) -> None:
        self.connected.clear()
        self._lost.set()
        if self._connack is not None and not self._connack.done():
            self._connack.set_exception(ConnectionLost(str(reason)))
        self._fail_pending(ConnectionLost(f"connection lost: {reason}"))

    def _on_published(self, mid: int, reason: ReasonCode) -> None:
        future = self._pending.pop(mid, None)
        if future is None or future.done():
            return
        if reason.is_failure and reason.value in PERMANENT_PUBACK_CODES:
            label = str(reason).lower().replace(" ", "_")
            future.set_exception(PublishRejected(f"broker refused the message: {reason}", label))
        elif reason.is_failure:
            future.set_exception(ConnectionLost(f"broker refused the message: {reason}"))
        else:
            future.set_result(None)

    def _on_received(self, message: Message) -> None:
        if self.on_message is not None:
            self.on_message(message)

    def _on_suback(self, mid: int, reasons: list[ReasonCode]) -> None:
        future = self._subscribed.pop(mid, None)
        if future is not None and not future.done():
            future.set_result(reasons)
