"""The InfluxDB forwarder against a real VictoriaMetrics (InfluxDB v2 write API): outages, replays, 4xx."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from edgeinfer.config import InfluxDBConfig
from edgeinfer.lineprotocol import LineProtocolError, parse_line
from edgeinfer.sinks.influx import SINK, InfluxForwarder
from edgeinfer.store.sqlite import AsyncStore, Store

pytestmark = pytest.mark.integration


def _cfg(url: str, **extra: object) -> InfluxDBConfig:
    return InfluxDBConfig(
        url=url, org="edge", bucket="sensors", token=SecretStr("tok-9f8e7d"), batch_size=100,
        flush_interval_s=0.1, timeout_s=2, **extra,
    )  # fmt: skip


def _lines(measurement: str, start: int, count: int, base_ms: int) -> list[tuple[int, str]]:
    # VictoriaMetrics keeps millisecond timestamps: one ms apart keeps every point distinct.
    return [
        ((base_ms + i) * 10**6, f"{measurement},sensor=s{i % 5} v={i} {(base_ms + i) * 10**6}")
        for i in range(start, start + count)
    ]


async def _until(predicate, within: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.05)
    return bool(await predicate())


def _samples(victoria, measurement: str) -> list[tuple[str, int, float]]:  # type: ignore[no-untyped-def]
    """(sensor tag, timestamp ms, value) of every stored sample of {measurement}_v."""
    out = []
    for series in victoria.export(f'{{__name__="{measurement}_v"}}'):
        for ts, value in zip(series["timestamps"], series["values"], strict=True):
            out.append((series["metric"]["sensor"], ts, value))
    return out


def test_outage_then_replay_delivers_every_point_exactly_once(
    victoria, tmp_path: Path, record_property
) -> None:  # type: ignore[no-untyped-def]
    measurement = f"m{uuid.uuid4().hex[:8]}"
    base_ms = time.time_ns() // 10**6 - 60_000
    store = AsyncStore(Store(tmp_path / "store.db"))
    registry = CollectorRegistry()
    forwarder = InfluxForwarder(_cfg(victoria.url), store, registry, backoff=(0.2, 1.0))

    backlog_zero = _zero(store)

    async def scenario() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(forwarder.run(stop))
        await store.run(store.store.append, points=_lines(measurement, 0, 300, base_ms))
        assert await _until(backlog_zero, 20)
        victoria.stop()
        await store.run(store.store.append, points=_lines(measurement, 300, 300, base_ms))
        await asyncio.sleep(2.0)
        assert await store.run(store.store.backlog, SINK, "points") == 300  # waiting, not lost
        await asyncio.to_thread(victoria.start)
        back = time.monotonic()
        assert await _until(backlog_zero, 30)
        drained_s = time.monotonic() - back
        await store.run(store.store.append, points=_lines(measurement, 600, 300, base_ms))
        assert await _until(backlog_zero, 20)
        stop.set()
        await asyncio.wait_for(task, 10)
        return drained_s

    drained_s = asyncio.run(scenario())
    samples = _samples(victoria, measurement)
    assert len(samples) == 900
    assert sorted(v for _, _, v in samples) == [float(i) for i in range(900)]
    assert (
        registry.get_sample_value("edgeinfer_influxdb_write_errors_total", {"kind": "transient"}) or 0
    ) > 0
    record_property("influx_backlog_300_drained_s", round(drained_s, 2))
    print(f"300 points queued during the outage drained {drained_s:.2f} s after VictoriaMetrics came back")

    # A crash between the write and the cursor update replays rows: same series + timestamp overwrite.
    replay = AsyncStore(Store(tmp_path / "replay.db"))

    async def replay_all() -> None:
        await replay.run(replay.store.append, points=_lines(measurement, 0, 900, base_ms))
        stop = asyncio.Event()
        task = asyncio.create_task(InfluxForwarder(_cfg(victoria.url), replay, CollectorRegistry()).run(stop))
        assert await _until(_zero(replay), 20)
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(replay_all())
    samples = _samples(victoria, measurement)
    per_key = Counter((sensor, ts) for sensor, ts, _ in samples)
    assert len(per_key) == 900 and set(per_key.values()) == {1}
    store.close()
    replay.close()


def _zero(store: AsyncStore):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return await store.run(store.store.backlog, SINK, "points") == 0

    return check


class _StrictGateway(BaseHTTPRequestHandler):
    """InfluxDB's strictness in front of VictoriaMetrics.

    VictoriaMetrics skips an unparsable line and answers 204; InfluxDB answers 400 with a message. This
    gateway checks the token (401 like InfluxDB), parses each line and answers 400 the way InfluxDB does, else forwards the body unchanged to
    the real VictoriaMetrics and relays its status, so the forwarder's 4xx path runs over real HTTP.
    """

    upstream = ""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Authorization") != "Token tok-9f8e7d":
            self._answer(401, json.dumps({"code": "unauthorized", "message": "unauthorized access"}))
            return
        for line in body.decode("utf-8", "replace").splitlines():
            try:
                parse_line(line)
            except LineProtocolError as exc:
                self._answer(
                    400, json.dumps({"code": "invalid", "message": f"unable to parse '{line}': {exc}"})
                )
                return
        request = urllib.request.Request(self.upstream + self.path, data=body, method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            self._answer(response.status, "")

    def _answer(self, status: int, text: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text.encode())

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def strict_gateway(victoria) -> Iterator[str]:  # type: ignore[no-untyped-def]
    handler = type("Handler", (_StrictGateway,), {"upstream": victoria.url})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_bad_rows_go_to_dead_letters_and_good_rows_in_the_same_batch_land(
    victoria, strict_gateway, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    measurement = f"m{uuid.uuid4().hex[:8]}"
    base_ms = time.time_ns() // 10**6 - 60_000
    good = _lines(measurement, 0, 60, base_ms)
    bad = ["no_fields_here", f"{measurement} v=", f'{measurement} v="unterminated']
    rows: list[str | tuple[int, str]] = list(good)
    for index, line in zip((7, 31, 58), bad, strict=True):
        rows.insert(index, line)
    store = AsyncStore(Store(tmp_path / "store.db"))
    registry = CollectorRegistry()
    forwarder = InfluxForwarder(_cfg(strict_gateway), store, registry)

    async def scenario() -> None:
        await store.run(store.store.append, points=rows)  # 63 rows: one batch
        stop = asyncio.Event()
        task = asyncio.create_task(forwarder.run(stop))
        assert await _until(_zero(store), 20)
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    letters = store.store.dead_letters(SINK)
    assert sorted(body for _, body, _ in letters) == sorted(bad)
    assert all("HTTP 400" in error and "unable to parse" in error for _, _, error in letters)
    assert registry.get_sample_value("edgeinfer_influxdb_points_dead_lettered_total") == 3
    assert sorted(v for _, _, v in _samples(victoria, measurement)) == [float(i) for i in range(60)]
    store.close()


def test_wrong_token_is_retried_not_dead_lettered(strict_gateway, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = AsyncStore(Store(tmp_path / "store.db"))
    registry = CollectorRegistry()
    cfg = _cfg(strict_gateway).model_copy(update={"token": SecretStr("not-the-token")})
    forwarder = InfluxForwarder(cfg, store, registry, backoff=(0.05, 0.1))

    async def scenario() -> None:
        await store.run(store.store.append, points=["m v=1 1795737541000000000"])
        stop = asyncio.Event()
        task = asyncio.create_task(forwarder.run(stop))
        # 401: an operator can fix the token, so the row waits in the store; it is not bad data.
        assert await _until(_errors_at_least(registry, 3), 10)
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(scenario())
    assert store.store.backlog(SINK, "points") == 1
    assert store.store.dead_letters(SINK) == []
    store.close()


def _errors_at_least(registry: CollectorRegistry, count: int):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        value = registry.get_sample_value("edgeinfer_influxdb_write_errors_total", {"kind": "transient"})
        return (value or 0) >= count

    return check
