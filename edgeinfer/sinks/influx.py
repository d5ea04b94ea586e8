"""Store-and-forward of the ``points`` stream to InfluxDB (or anything that speaks its v2 write API).

influxdb-client is the transport only: one synchronous write (``write_api(write_options=SYNCHRONOUS)``)
per batch drained from the local store, run in a worker thread, urllib3 retries off. Its batching mode
is never used (it queues in unbounded memory, drops batches after its retry time and loses what is
pending on close). Here a row leaves the store (its cursor moves) only after the server answered 2xx.

- Batches: up to ``batch_size`` rows; a full batch is followed by the next at once, otherwise the
  forwarder waits ``flush_interval_s``.
- 5xx, 429, network errors, timeouts, and 401/403/404 (credentials or bucket: fixable by the operator)
  are retried with exponential backoff and jitter, forever; the rows wait in the store.
- 400/413/422 mean bad data: the batch is bisected until the offending rows are isolated, every good row
  is written, and each bad row moves to the dead-letter table with the server's message
  (``edgeinfer_influxdb_points_dead_lettered_total`` counts them).
- Idempotent by construction: a point is identified by measurement, tags and timestamp, so a replay
  (after a crash between the write and the cursor update, or a bisected batch) overwrites and never
  duplicates.

Pointing it at a server (``influxdb:`` section):

- InfluxDB 2.x / Cloud: ``url: http://host:8086``, ``org``, ``bucket``, ``token`` (or ``token_file``).
- InfluxDB 3 (Core/Enterprise/Cloud Serverless/Dedicated): same ``/api/v2/write`` endpoint; ``bucket`` is
  the database name, ``token`` a database token, ``org`` is ignored (any value).
- InfluxDB 1.8+ (``/api/v2/write`` compatibility): ``token: "username:password"`` (or ``":"`` with auth
  off), ``bucket: "database/retention_policy"`` (``database`` alone uses the default policy), ``org: "-"``.
- VictoriaMetrics (used by the tests): any org/bucket; series are named ``measurement_field``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from influxdb_client.rest import ApiException
from prometheus_client import CollectorRegistry, Counter, Gauge

from edgeinfer.aio import Backoff, wait_any
from edgeinfer.config import InfluxDBConfig
from edgeinfer.errors import SinkError
from edgeinfer.store.sqlite import AsyncStore, OutboxRow

logger = logging.getLogger(__name__)

SINK = "influxdb"
BAD_DATA = {400, 413, 422}
FINAL_FLUSH_S = 2.0


class WriteRejected(SinkError):
    """The server refused the data itself (4xx): retrying the same rows cannot succeed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class WriteFailed(SinkError):
    """A transient failure (network, timeout, 5xx, auth): retry later."""


def _server_message(exc: ApiException) -> str:
    body = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else str(exc.body or "")
    try:
        doc = json.loads(body)
        if isinstance(doc, dict) and "message" in doc:
            return str(doc["message"])[:1000]
    except ValueError:
        pass
    return (body or str(exc.reason or ""))[:1000]


class InfluxWriter:
    """influxdb-client as a plain transport: ``write(lines)`` raises WriteRejected or WriteFailed."""

    def __init__(self, cfg: InfluxDBConfig) -> None:
        self.cfg = cfg
        self._client = InfluxDBClient(
            url=cfg.url,
            token=cfg.token.get_secret_value() if cfg.token is not None else "",
            org=cfg.org or "-",
            timeout=int(cfg.timeout_s * 1000),
            retries=False,
            enable_gzip=False,
        )
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, lines: Sequence[str]) -> None:
        try:
            self._api.write(
                bucket=self.cfg.bucket,
                org=self.cfg.org or "-",
                record=list(lines),
                write_precision=WritePrecision.NS,  # type: ignore[arg-type]  # a str constant, typed as the class
            )
        except ApiException as exc:
            status = int(exc.status or 0)
            message = _server_message(exc)
            if status in BAD_DATA:
                raise WriteRejected(status, message) from None
            raise WriteFailed(f"HTTP {status}: {message}") from None
        except Exception as exc:  # urllib3/socket errors: the boundary turns them into one type
            raise WriteFailed(f"{type(exc).__name__}: {str(exc)[:300]}") from None

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]  # influxdb-client's close() has no annotations


class InfluxForwarder:
    """The ``influxdb`` component."""

    name = "influxdb"
    sink = SINK

    def __init__(
        self,
        cfg: InfluxDBConfig,
        store: AsyncStore,
        registry: CollectorRegistry,
        *,
        backoff: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.backoff = backoff
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgeinfer.influxdb")
        self._writer: InfluxWriter | None = None
        self.written = Counter(
            "edgeinfer_influxdb_points_written", "Points the server accepted.", registry=registry
        )
        self.dead = Counter(
            "edgeinfer_influxdb_points_dead_lettered",
            "Points the server rejected as bad data.",
            registry=registry,
        )
        self.errors = Counter(
            "edgeinfer_influxdb_write_errors", "Failed write requests, by kind.", ["kind"], registry=registry
        )
        self.backlog = Gauge(
            "edgeinfer_influxdb_backlog_points", "Points waiting in the store.", registry=registry
        )
        self._answered: bool | None = None  # the last write reached the server; None: none tried yet

    @property
    def connected(self) -> bool | None:
        """Read-only, for the status line: the last write was answered (accepted or refused as bad data)."""
        return self._answered

    async def count_backlog(self) -> int:
        """The points waiting in the store; refreshes ``edgeinfer_influxdb_backlog_points`` (which the
        forwarder itself only updates after a write, so it would stand still while the server is down)."""
        backlog = await self.store.run(self.store.store.backlog, SINK, "points")
        self.backlog.set(backlog)
        return backlog

    async def run(self, stop: asyncio.Event) -> None:
        await self.store.run(self.store.store.register_sink, SINK, "points")
        self._writer = InfluxWriter(self.cfg)
        try:
            while not stop.is_set():
                full = await self._forward_once(stop)
                if full is None or not full:
                    await wait_any(stop, within=self.cfg.flush_interval_s)
            deadline = time.monotonic() + FINAL_FLUSH_S  # stop: a last attempt, no retries
            while time.monotonic() < deadline and await self._forward_once(None):
                pass
        finally:
            writer, self._writer = self._writer, None
            await asyncio.get_running_loop().run_in_executor(self._executor, writer.close)
            self._executor.shutdown(wait=False)

    async def _forward_once(self, stop: asyncio.Event | None) -> bool | None:
        """Deliver one batch. True: it was full (more may wait); False: partial or empty; None: gave up
        (only when ``stop`` is None, i.e. the final flush, or when stop was set during retries)."""
        rows = await self.store.run(self.store.store.pending, SINK, "points", self.cfg.batch_size)
        if not rows:
            self.backlog.set(0)
            return False
        backoff = Backoff(*self.backoff)
        while True:
            try:
                await self._write_bisecting(rows)
                self._answered = True
                break
            except WriteFailed as exc:
                self._answered = False
                self.errors.labels("transient").inc()
                if stop is None or stop.is_set():
                    return None
                delay = backoff.next_delay()
                logger.warning(
                    "InfluxDB %s: write of %d points failed: %s; retrying in %.1f s",
                    self.cfg.url,
                    len(rows),
                    exc,
                    delay,
                )
                if await wait_any(stop, within=delay):
                    return None
        await self.store.run(self.store.store.ack, SINK, "points", rows[-1].id)
        self.backlog.set(await self.store.run(self.store.store.backlog, SINK, "points"))
        return len(rows) == self.cfg.batch_size

    async def _write_bisecting(self, rows: list[OutboxRow]) -> None:
        """Write rows; on bad data split until the bad rows are alone, dead-letter those. WriteFailed escapes."""
        loop = asyncio.get_running_loop()
        writer = self._writer
        assert writer is not None
        try:
            await loop.run_in_executor(self._executor, writer.write, [row.body for row in rows])
        except WriteRejected as exc:
            self.errors.labels("rejected").inc()
            if len(rows) > 1:
                middle = len(rows) // 2
                await self._write_bisecting(rows[:middle])
                await self._write_bisecting(rows[middle:])
                return
            logger.error(
                "InfluxDB %s rejected point %d: %s; moved to dead letters", self.cfg.url, rows[0].id, exc
            )
            await self.store.run(self.store.store.dead_letter, SINK, "points", rows, str(exc))
            self.dead.inc()
            return
        self.written.inc(len(rows))
