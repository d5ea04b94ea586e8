"""The MQTT client's failure paths that need no broker: they become SinkError, never a crash."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from edgeinfer.aio import Backoff
from edgeinfer.config import MQTTConfig, TLSConfig
from edgeinfer.errors import SinkError
from edgeinfer.mqtt.client import ConnectionLost, MQTTClient


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once the socket is closed


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (MQTTConfig(host="127.0.0.1", port=_closed_port()), "cannot connect"),
        (MQTTConfig(tls=TLSConfig(ca_file=Path("/nonexistent/ca.crt"))), "cannot set up the client"),
    ],
)
def test_connect_failures_are_sink_errors(cfg: MQTTConfig, message: str) -> None:
    client = MQTTClient(cfg, client_id="t")

    async def attempt() -> None:
        await client._connect_once()

    with pytest.raises(SinkError, match=message):
        asyncio.run(attempt())
    assert not client.connected.is_set()


def test_publish_while_disconnected_raises_connection_lost() -> None:
    client = MQTTClient(MQTTConfig(), client_id="t")
    with pytest.raises(ConnectionLost):
        client.publish("a/b", "x", qos=1)


def test_backoff_grows_to_the_cap_with_full_jitter() -> None:
    # Full jitter (AWS architecture blog): each delay is uniform in [0, cap], the cap doubling up to max_s.
    caps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    fixed = Backoff(0.5, 4.0, jitter=lambda: 0.25)
    assert [fixed.next_delay() for _ in range(8)] == [cap * 0.25 for cap in caps]
    real = Backoff(0.5, 4.0)
    delays = []
    for cap in caps * 50:
        if real.attempt >= len(caps):
            real.reset()
        assert real.cap() == caps[real.attempt]
        delays.append(real.next_delay())
        assert 0.0 <= delays[-1] <= cap
    assert min(delays) < 0.25  # below half the first cap: really full jitter, not "equal jitter"
