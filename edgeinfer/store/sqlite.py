"""The local store: an embedded SQLite database (WAL) that is the durable outbox of the device.

Every event and every measurement is committed here before it leaves the device. Two streams:

- ``events``: detection event JSON, one row per event (read back by ``edgeinfer events`` as
  :class:`StoredEvent`, drained to MQTT);
- ``points``: InfluxDB line protocol, one row per point (drained to InfluxDB);
- ``messages``: other MQTT messages with their topic (below ``{prefix}/{device}/``) and retain flag: the
  tracking lifecycle and the retained counts (drained to MQTT, in order, like events).

Each sink keeps a cursor per stream (the highest row id the far side acknowledged). Rows stay after
delivery so the device keeps a local history; they leave only by retention age or the size cap, oldest
first, and rows that go before every sink had them are counted as ``dropped_undelivered``.

Bounds on disk. ``max_bytes`` bounds every file of the store together: the database, its write-ahead log
(WAL), the WAL index (``-shm``) and a reserve file. The WAL is kept small (``journal_size_limit`` and
``wal_autocheckpoint`` at :attr:`Store.wal_limit`, 1/16 of the smaller of ``max_bytes`` and the partition,
256 KiB to 4 MiB), and the size cap is checked after every commit, so the store never grows past its
bound by more than one transaction. The reserve (``edgeinfer.db-reserve``, ``wal_limit`` bytes,
allocated when there is room) is what lets the store help itself on a full disk, where even deleting
rows needs room in the WAL: a commit that fails for lack of space releases the reserve, prunes the
oldest rows (counted, as the size cap does), lowers the store's own cap to what the partition holds
(until there is room again), and commits again; the reserve is made again as soon as there is room for it.

The class is synchronous and thread-safe (one connection, one lock); the daemon calls it from a single
dedicated thread (see :class:`AsyncStore`) so SQLite never blocks the event loop. ``readonly=True``
(``edgeinfer events``) opens the file read-only and writes nothing: no schema, no pragmas that write, no
checkpoint, no reserve; a store on a read-only file system or without write permission reads fine.

One writer per data directory. A writable store holds an advisory lock (``flock``) on ``edgeinfer.db.lock``
for as long as it is open, and a second writer, in this process or another (another container on the
same volume, a blue-green replacement started too early), is refused with a :class:`StoreError` that names
the directory and the holder (pid, host, start time, written into the lock file) instead of interleaving
two outboxes. The kernel drops the lock when the holder exits, however it exits, so a stale lock file
never blocks a restart. Readers (``readonly=True``) take no lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import math
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple, NotRequired, ParamSpec, TypedDict, TypeVar, cast

from edgeinfer.errors import StoreError

logger = logging.getLogger(__name__)

Stream = Literal["events", "points", "messages"]
STREAMS: tuple[Stream, ...] = ("events", "points", "messages")

STORE_FILE = "edgeinfer.db"  # in data_dir
LOCK_SUFFIX = ".lock"  # edgeinfer.db.lock: held (flock) by the one process that writes the store
RESERVE_SUFFIX = "-reserve"  # edgeinfer.db-reserve: space set aside so pruning can run on a full disk
MIN_WAL_BYTES, MAX_WAL_BYTES = 256 * 2**10, 4 * 2**20
SHM_BYTES = 32 * 2**10  # the WAL index of a WAL within MAX_WAL_BYTES
MIN_DB_BYTES = 64 * 2**10
CAP_HYSTERESIS = 0.95  # the size cap prunes down to this fraction of the cap

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera TEXT NOT NULL,
    ts_ns INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_camera_ts ON events (camera, ts_ns);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts_ns);
CREATE TABLE IF NOT EXISTS points (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ns INTEGER NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS points_ts ON points (ts_ns);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ns INTEGER NOT NULL,
    topic TEXT NOT NULL,
    body TEXT NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_ts ON messages (ts_ns);
CREATE TABLE IF NOT EXISTS cursors (
    sink TEXT NOT NULL,
    stream TEXT NOT NULL,
    last_id INTEGER NOT NULL,
    PRIMARY KEY (sink, stream)
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    sink TEXT NOT NULL,
    stream TEXT NOT NULL,
    row_id INTEGER NOT NULL,
    body TEXT NOT NULL,
    error TEXT NOT NULL,
    at_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""
_BODY_COLUMN = {"events": "body", "points": "line", "messages": "body"}
_SEQ_COUNTER = "seq."  # counters row per camera: the highest event seq stored
_BOOT_COUNTER = "boot"  # counts the daemon's starts on this store: the prefix of track ids


@dataclass(frozen=True, slots=True)
class MessageRow:
    """An MQTT message for the ``messages`` stream; ``topic`` is below ``{prefix}/{device}/``."""

    topic: str
    body: str
    ts_ns: int
    retain: bool = False


@dataclass(frozen=True, slots=True)
class EventRow:
    camera: str
    ts_ns: int
    body: str
    seq: int | None = None  # the event's seq: the store keeps the highest per camera (next_seqs)


class DetectionJSON(TypedDict):
    """One item of an event's ``detections``."""

    label: str
    class_id: int
    score: float
    box: list[float]  # x1, y1, x2, y2 in frame pixels


class EventJSON(TypedDict):
    """An event document as pipeline/outcomes.py writes it: schemas/detection-event.schema.json."""

    device: str
    camera: str
    seq: int
    frame: NotRequired[int]  # the frame's index in its source (absent in events stored before it existed)
    ts: str  # RFC 3339, UTC, milliseconds (edgeinfer.timefmt)
    model: str
    detections: list[DetectionJSON]
    latency_ms: dict[str, float]
    batch_size: int
    context: NotRequired[dict[str, float | bool | str]]


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of the ``events`` stream as read back: its columns, and its JSON as stored and parsed."""

    id: int
    camera: str
    ts_ns: int
    body: str  # the JSON exactly as stored (and as the MQTT sink publishes it)
    doc: EventJSON  # ``body``, parsed once, here (not validated against the schema)


class DeadLetter(NamedTuple):
    sink: str
    body: str
    error: str


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    body: str
    camera: str | None = None  # events only
    topic: str | None = None  # messages only
    retain: bool = False  # messages only


@dataclass(frozen=True, slots=True)
class PruneResult:
    deleted: int
    undelivered: int

    def __add__(self, other: PruneResult) -> PruneResult:
        return PruneResult(self.deleted + other.deleted, self.undelivered + other.undelivered)


class Store:
    """The SQLite outbox. See the module docstring."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = 512 * 2**20,
        retention_s: float = 7 * 86400,
        readonly: bool = False,
        changing: bool = False,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.retention_s = retention_s
        self.readonly = readonly
        self.reserve_path = path.with_name(path.name + RESERVE_SUFFIX)
        self._wal_path = path.with_name(path.name + "-wal")
        self._lock = threading.Lock()
        self._unreported = PruneResult(0, 0)  # pruned by the size cap after commits, not yet returned
        self._lock_fd = -1
        if readonly:
            self._db = open_readonly(path, changing=changing)
            self.wal_limit = self.reserve_bytes = 0
            self.cap_bytes = self._configured_cap = max_bytes
            self._page_size = 4096
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"local store: cannot create the data directory {path.parent}: {exc.strerror or exc} "
                "(set data_dir or --data-dir)"
            ) from None
        self._lock_fd = _take_writer_lock(path)
        partition = _partition_bytes(path.parent) or max_bytes
        self.wal_limit = min(MAX_WAL_BYTES, max(MIN_WAL_BYTES, min(max_bytes, partition) // 16))
        self.reserve_bytes = self.wal_limit
        # the database's own share of max_bytes: the rest is for the WAL, its index and the reserve
        self.cap_bytes = max(MIN_DB_BYTES, max_bytes - self.wal_limit - self.reserve_bytes - SHM_BYTES)
        self._configured_cap = self.cap_bytes  # cap_bytes goes lower while the partition is full
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            # auto_vacuum must be set before the first table exists; it lets pruning give pages back.
            self._db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            self._db.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode: a power cut may lose the last transactions, never corrupt the file.
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
            self._db.execute(f"PRAGMA journal_size_limit = {self.wal_limit}")
            self._db.execute(f"PRAGMA wal_autocheckpoint = {max(16, self.wal_limit // 2 // self._page_size)}")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            os.close(self._lock_fd)
            raise StoreError(f"cannot open the local store {path}: {exc}") from exc
        if not self._ensure_reserve():
            logger.warning(
                "local store: no room for its %d KiB reserve in %s (%d KiB free); pruning may not be able"
                " to run if the disk fills up",
                self.reserve_bytes // 1024,
                path.parent,
                _free_bytes(path.parent) // 1024,
            )

    # ----------------------------------------------------------------- writing

    def append(
        self,
        events: Sequence[EventRow] = (),
        points: Sequence[str | tuple[int, str]] = (),
        messages: Sequence[MessageRow] = (),
    ) -> None:
        """Commit events, points and messages in one transaction. Points are lines, or (ts_ns, line) pairs.

        A commit that fails for lack of disk space makes room (see the module docstring) and is tried once
        more; StoreError if it still fails (nothing of it is stored then). After a commit the size cap is
        applied (what it prunes is returned by the next :meth:`prune`)."""
        now = time.time_ns()
        point_rows = [(p, now) if isinstance(p, str) else (p[1], p[0]) for p in points]
        seqs: dict[str, int] = {}
        for e in events:
            if e.seq is not None and e.seq > seqs.get(e.camera, -1):
                seqs[e.camera] = e.seq
        try:
            self._insert(events, point_rows, seqs, messages)
        except StoreError as exc:
            if not self._disk_full(exc):
                raise
            self._make_room(exc)
            self._insert(events, point_rows, seqs, messages)
        try:
            if self._used_bytes() > self.cap_bytes:
                self._add_unreported(self._enforce_cap())
        except (StoreError, sqlite3.Error) as exc:  # committed already: never fail the append for this
            logger.warning("local store: applying the size cap after a commit failed: %s", exc)

    def _insert(
        self,
        events: Sequence[EventRow],
        point_rows: list[tuple[str, int]],
        seqs: dict[str, int],
        messages: Sequence[MessageRow] = (),
    ) -> None:
        with self._tx() as db:
            if messages:
                db.executemany(
                    "INSERT INTO messages (ts_ns, topic, body, retain) VALUES (?, ?, ?, ?)",
                    [(m.ts_ns, m.topic, m.body, int(m.retain)) for m in messages],
                )
            if events:
                db.executemany(
                    "INSERT INTO events (camera, ts_ns, body) VALUES (?, ?, ?)",
                    [(e.camera, e.ts_ns, e.body) for e in events],
                )
            if point_rows:
                db.executemany("INSERT INTO points (line, ts_ns) VALUES (?, ?)", point_rows)
            if seqs:  # in the same transaction: a stored event's seq is never handed out again
                db.executemany(
                    "INSERT INTO counters (name, value) VALUES (?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)",
                    [(_SEQ_COUNTER + camera, seq) for camera, seq in seqs.items()],
                )

    def next_seqs(self) -> dict[str, int]:
        """Per camera, the first seq a new run may use: one past the highest seq ever stored for it.

        The highest seq is kept in ``counters`` (``seq.{camera}``), committed with the events, so it
        survives retention and the size cap. A store written before that counter existed has none: its
        events' own ``seq`` values are read once instead (and the counters written)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT substr(name, ?), value FROM counters WHERE name LIKE ?",
                (len(_SEQ_COUNTER) + 1, _SEQ_COUNTER + "%"),
            ).fetchall()
        if not rows and self.count("events"):
            with self._tx() as db:
                rows = db.execute(
                    "SELECT camera, MAX(json_extract(body, '$.seq')) FROM events "
                    "WHERE json_valid(body) GROUP BY camera"
                ).fetchall()
                rows = [(camera, int(seq)) for camera, seq in rows if isinstance(seq, int)]
                db.executemany(
                    "INSERT OR IGNORE INTO counters (name, value) VALUES (?, ?)",
                    [(_SEQ_COUNTER + camera, seq) for camera, seq in rows],
                )
        return {str(camera): int(seq) + 1 for camera, seq in rows}

    def next_boot(self) -> int:
        """Count one more start of the daemon on this store and return the count (1 for the first): the
        prefix that keeps track ids unique across restarts, as the seq counter does for events."""
        with self._tx() as db:
            self._bump(db, _BOOT_COUNTER, 1)
            return int(
                db.execute("SELECT value FROM counters WHERE name = ?", (_BOOT_COUNTER,)).fetchone()[0]
            )

    # ----------------------------------------------------------------- reading

    def events(
        self,
        *,
        camera: str | None = None,
        since_ns: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
        after_id: int = 0,
    ) -> list[StoredEvent]:
        """Stored events after ``after_id``, oldest first (or newest first), optionally of one camera and
        from a time on; at most ``limit`` of them."""
        where, args = _event_filter(camera, since_ns, after_id)
        sql = f"SELECT id, camera, ts_ns, body FROM events WHERE {where}"  # noqa: S608 (fixed clauses)
        sql += " ORDER BY id DESC" if newest_first else " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._lock:
            rows: list[tuple[int, str, int, str]] = self._db.execute(sql, args).fetchall()
        return [
            StoredEvent(row_id, cam, ts_ns, body, cast(EventJSON, json.loads(body)))
            for row_id, cam, ts_ns, body in rows
        ]

    def count_events(self, *, camera: str | None = None, since_ns: int | None = None) -> int:
        where, args = _event_filter(camera, since_ns, 0)
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM events WHERE {where}", args).fetchone()[0])  # noqa: S608

    def cameras(self) -> list[str]:
        """The cameras that have events in the store, by name."""
        with self._lock:
            return [c for (c,) in self._db.execute("SELECT DISTINCT camera FROM events ORDER BY camera")]

    def last_event_id(self) -> int:
        with self._lock:
            value = self._db.execute("SELECT max(id) FROM events").fetchone()[0]
        return int(value or 0)

    def count(self, stream: Stream) -> int:
        with self._lock:
            return int(self._db.execute(f"SELECT COUNT(*) FROM {stream}").fetchone()[0])  # noqa: S608

    # ----------------------------------------------------------------- outbox

    def register_sink(self, sink: str, stream: Stream) -> None:
        """Start a sink's cursor at the beginning, so rows stored before it existed are delivered too."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO cursors (sink, stream, last_id) VALUES (?, ?, 0)", (sink, stream)
            )

    def cursor(self, sink: str, stream: Stream) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT last_id FROM cursors WHERE sink = ? AND stream = ?", (sink, stream)
            ).fetchone()
        return int(row[0]) if row else 0

    def pending(self, sink: str, stream: Stream, limit: int, after_id: int | None = None) -> list[OutboxRow]:
        """The next rows the sink has not had acknowledged, oldest first."""
        start = self.cursor(sink, stream) if after_id is None else after_id
        camera = "camera" if stream == "events" else "NULL"
        topic, retain = ("topic", "retain") if stream == "messages" else ("NULL", "0")
        sql = (
            f"SELECT id, {_BODY_COLUMN[stream]}, {camera}, {topic}, {retain} FROM {stream} "  # noqa: S608
            "WHERE id > ? ORDER BY id LIMIT ?"
        )
        with self._lock:
            return [
                OutboxRow(r[0], r[1], r[2], r[3], bool(r[4])) for r in self._db.execute(sql, (start, limit))
            ]

    def backlog(self, sink: str, stream: Stream) -> int:
        start = self.cursor(sink, stream)
        with self._lock:
            return int(
                self._db.execute(f"SELECT COUNT(*) FROM {stream} WHERE id > ?", (start,)).fetchone()[0]  # noqa: S608
            )

    def ack(self, sink: str, stream: Stream, upto_id: int) -> None:
        """The far side has every row up to and including ``upto_id``."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO cursors (sink, stream, last_id) VALUES (?, ?, ?) "
                "ON CONFLICT (sink, stream) DO UPDATE SET last_id = MAX(last_id, excluded.last_id)",
                (sink, stream, upto_id),
            )

    def dead_letter(self, sink: str, stream: Stream, rows: Sequence[OutboxRow], error: str) -> None:
        """Park rows the far side rejected for good (4xx), with its message. Does not move the cursor."""
        now = time.time_ns()
        with self._tx() as db:
            db.executemany(
                "INSERT INTO dead_letters (sink, stream, row_id, body, error, at_ns) VALUES (?, ?, ?, ?, ?, ?)",
                [(sink, stream, r.id, r.body, error[:2000], now) for r in rows],
            )
            self._bump(db, f"dead_letters.{sink}", len(rows))

    def dead_letters(self, sink: str | None = None) -> list[DeadLetter]:
        """Parked rows, oldest first."""
        sql, args = "SELECT sink, body, error FROM dead_letters", []
        if sink is not None:
            sql += " WHERE sink = ?"
            args.append(sink)
        with self._lock:
            return [DeadLetter(r[0], r[1], r[2]) for r in self._db.execute(sql + " ORDER BY id", args)]

    # ----------------------------------------------------------------- bounds

    def size_bytes(self) -> int:
        """Every file of the store on disk: database, WAL, WAL index and reserve (what max_bytes bounds)."""
        return sum(
            _file_bytes(f)
            for f in (
                self.path,
                self._wal_path,
                self.path.with_name(self.path.name + "-shm"),
                self.reserve_path,
            )
        )

    def prune(self, now_ns: int | None = None) -> PruneResult:
        """Apply the retention age, then the size cap (oldest rows first); make the reserve again if it was
        used and there is room. Returns what went, including what the size cap pruned after commits since
        the last call."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        cutoff = now_ns - int(self.retention_s * 1e9)
        result = PruneResult(0, 0)
        for stream in STREAMS:
            with self._lock:
                row = self._db.execute(
                    f"SELECT MAX(id) FROM {stream} WHERE ts_ns < ?",  # noqa: S608
                    (cutoff,),
                ).fetchone()
            if row[0] is not None:
                result = result + self._delete_oldest(stream, int(row[0]))
        if result.deleted:
            self._vacuum()
        result = result + self._enforce_cap()
        if not self.reserve_path.exists() and self._ensure_reserve():
            logger.warning(
                "local store: the disk has room again; its %d KiB reserve is back", self.reserve_bytes // 1024
            )
        if self.cap_bytes < self._configured_cap and self.reserve_path.exists():
            cap = min(self._configured_cap, self._room_for_data())
            if cap > self.cap_bytes:
                self.cap_bytes = cap
                logger.warning(
                    "local store: the disk has room again; the store keeps up to %d KiB", cap // 1024
                )
        unreported, self._unreported = self._unreported, PruneResult(0, 0)
        return result + unreported

    @property
    def has_reserve(self) -> bool:
        return self.reserve_path.exists()

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {name: int(value) for name, value in self._db.execute("SELECT name, value FROM counters")}

    def close(self) -> None:
        with self._lock:
            try:
                if not self.readonly:
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:  # a full disk: the WAL stays, the next open replays it
                logger.warning("local store: final checkpoint failed: %s", exc)
            finally:
                self._db.close()
                if not self.readonly and self._lock_fd >= 0:
                    os.close(self._lock_fd)  # releases the writer lock
                    self._lock_fd = -1

    # ----------------------------------------------------------------- internals

    def _used_bytes(self) -> int:
        """The database's pages in use (free pages are reused before the file grows)."""
        with self._lock:
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * self._page_size)

    def _enforce_cap(self) -> PruneResult:
        """Delete the oldest rows, in chunks that keep the WAL small, until the database's pages in use are
        under CAP_HYSTERESIS of ``cap_bytes``; then give the freed pages back to the file system."""
        result = PruneResult(0, 0)
        used = self._used_bytes()
        if used <= self.cap_bytes:
            return result
        target = int(self.cap_bytes * CAP_HYSTERESIS)
        while used > target:
            removed = 0
            for stream in STREAMS:
                with self._lock:
                    lo, hi = self._db.execute(f"SELECT MIN(id), MAX(id) FROM {stream}").fetchone()  # noqa: S608
                if lo is None:
                    continue
                rows = hi - lo + 1
                share = max(1, math.ceil(rows * min(0.1, self._chunk_bytes() / max(used, 1))))
                d = self._delete_upto(stream, lo + share - 1)
                removed += d.deleted
                result = result + d
            self._vacuum(truncate=False)
            if removed == 0:
                break
            used = self._used_bytes()
        self._checkpoint("TRUNCATE")
        return result

    def _chunk_bytes(self) -> int:
        """How much to delete per transaction: a quarter of the WAL's bound."""
        return max(self._page_size * 4, self.wal_limit // 4)

    def _delete_oldest(self, stream: Stream, upto_id: int) -> PruneResult:
        """Delete rows up to ``upto_id`` in chunks (a week of rows must not go through the WAL at once)."""
        result = PruneResult(0, 0)
        used = max(self._used_bytes(), 1)
        with self._lock:
            lo, total = self._db.execute(f"SELECT MIN(id), COUNT(*) FROM {stream}").fetchone()  # noqa: S608
        if lo is None:
            return result
        per_row = used / max(total, 1)  # an over-estimate (both streams' pages): smaller chunks
        step = max(1, int(self._chunk_bytes() / per_row))
        start = lo
        while start <= upto_id:
            end = min(upto_id, start + step - 1)
            result = result + self._delete_upto(stream, end)
            self._checkpoint("PASSIVE")
            start = end + 1
        return result

    def _vacuum(self, *, truncate: bool = True) -> None:
        """Give free pages back to the file system (the file shrinks at the checkpoint)."""
        with self._lock:
            # executescript steps the pragma to the end; execute() would free a single page per call
            self._db.executescript("PRAGMA incremental_vacuum")
        self._checkpoint("TRUNCATE" if truncate else "PASSIVE")

    def _disk_full(self, exc: StoreError) -> bool:
        code = getattr(exc.__cause__, "sqlite_errorcode", None)
        return code == sqlite3.SQLITE_FULL or _free_bytes(self.path.parent) < self.wal_limit // 4

    def _make_room(self, exc: StoreError) -> None:
        """A commit failed for lack of space: release the reserve, checkpoint, lower the cap to what this
        partition holds for the store, prune to it, make the reserve again if there is room."""
        released = self._release_reserve()
        with contextlib.suppress(sqlite3.Error, StoreError):
            self._checkpoint("TRUNCATE")
        cap = self._room_for_data()
        lowered = cap < self.cap_bytes
        self.cap_bytes = min(self.cap_bytes, cap)
        try:
            pruned = self._enforce_cap()
        except (StoreError, sqlite3.Error) as error:
            logger.error(
                "local store: the disk is full and pruning failed too (%s)%s", error,
                "" if released else "; there was no reserve to release",
            )  # fmt: skip
            raise StoreError(f"local store: {exc}; pruning failed: {error}") from error
        self._add_unreported(pruned)
        reserve = self._ensure_reserve()
        logger.error(
            "local store: the disk is full (%s): %s; pruned %d rows (%d never delivered)%s%s",
            exc.__cause__ or exc,
            "released the reserve" if released else "no reserve to release",
            pruned.deleted,
            pruned.undelivered,
            f"; the store keeps at most {self.cap_bytes // 1024} KiB until the disk has room"
            if lowered
            else "",
            "" if reserve else "; no room to make the reserve again yet",
        )

    def _room_for_data(self) -> int:
        """What the database may use on this partition now: its files and the free space, less room for
        the WAL, its index and the reserve."""
        have = sum(_file_bytes(f) for f in (self.path, self._wal_path, self.reserve_path))
        have += _free_bytes(self.path.parent)
        return max(MIN_DB_BYTES, have - self.wal_limit - self.reserve_bytes - SHM_BYTES)

    def _add_unreported(self, result: PruneResult) -> None:
        self._unreported = self._unreported + result

    def _ensure_reserve(self) -> bool:
        """The reserve file exists at its size; make it if there is room (and leave room for the WAL)."""
        with contextlib.suppress(OSError):
            if self.reserve_path.stat().st_size >= self.reserve_bytes:
                return True
        if _free_bytes(self.path.parent) < self.reserve_bytes + self.wal_limit:
            return False
        try:
            fd = os.open(self.reserve_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                try:
                    os.posix_fallocate(fd, 0, self.reserve_bytes)
                except OSError:  # a file system without fallocate: real bytes, not a sparse file
                    block = b"\0" * 65536
                    for _ in range(math.ceil(self.reserve_bytes / len(block))):
                        os.write(fd, block)
                os.fsync(fd)
            finally:
                os.close(fd)
            return True
        except OSError:
            with contextlib.suppress(OSError):
                self.reserve_path.unlink()
            return False

    def _release_reserve(self) -> bool:
        try:
            self.reserve_path.unlink()
            return True
        except OSError:
            return False

    def _delete_upto(self, stream: Stream, upto_id: int) -> PruneResult:
        with self._tx() as db:
            cursors = [r[0] for r in db.execute("SELECT last_id FROM cursors WHERE stream = ?", (stream,))]
            lowest = min(cursors) if cursors else None
            undelivered = 0
            if lowest is not None and lowest < upto_id:
                undelivered = db.execute(
                    f"SELECT COUNT(*) FROM {stream} WHERE id > ? AND id <= ?",  # noqa: S608
                    (lowest, upto_id),
                ).fetchone()[0]
            deleted = db.execute(f"DELETE FROM {stream} WHERE id <= ?", (upto_id,)).rowcount  # noqa: S608
            self._bump(db, f"pruned.{stream}", deleted)
            self._bump(db, f"dropped_undelivered.{stream}", undelivered)
        return PruneResult(int(deleted), int(undelivered))

    def _checkpoint(self, mode: Literal["PASSIVE", "RESTART", "TRUNCATE"] = "TRUNCATE") -> None:
        with self._lock:
            self._db.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()

    @staticmethod
    def _bump(db: sqlite3.Connection, name: str, by: int) -> None:
        if by:
            db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
                (name, by),
            )

    def _tx(self) -> _Transaction:
        return _Transaction(self._db, self._lock)


class _Transaction:
    """``with store._tx() as db:`` holds the lock and wraps BEGIN IMMEDIATE ... COMMIT/ROLLBACK."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self._db, self._lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._lock.release()
            raise StoreError(f"local store: {exc}") from exc
        except BaseException:
            self._lock.release()
            raise
        return self._db

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        try:
            self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        except sqlite3.Error as error:
            if self._db.in_transaction:  # a COMMIT that failed (disk full) leaves it open: end it
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise StoreError(f"local store: {error}") from error
        finally:
            self._lock.release()
        if isinstance(exc, sqlite3.Error):  # a failed statement inside the transaction (disk full, ...)
            raise StoreError(f"local store: {exc}") from exc


def _take_writer_lock(store_path: Path) -> int:
    """Hold an exclusive flock on the store's lock file (returns its fd) or raise StoreError naming the holder."""
    lock_path = store_path.with_name(store_path.name + LOCK_SUFFIX)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StoreError(
            f"cannot open the local store {store_path}: {lock_path.name}: {exc.strerror or exc}"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "unknown process"
        os.close(fd)
        raise StoreError(
            f"local store: the data directory {lock_path.parent} is in use by another edgeinfer "
            f"({holder}); one process at a time writes a store. Stop the other one first, or give this "
            "one its own data_dir (or volume)"
        ) from None
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with contextlib.suppress(OSError):  # who holds it is for the message only; a full disk must not stop us
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}, since {started}\n".encode(), 0)
    return fd


def _file_bytes(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _free_bytes(directory: Path) -> int:
    """Bytes this process can still write on the partition of ``directory`` (0 if unknown)."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return 0
    blocks = st.f_bfree if os.geteuid() == 0 else st.f_bavail  # root may use the reserved blocks
    return int(blocks * st.f_frsize)


def _partition_bytes(directory: Path) -> int:
    try:
        st = os.statvfs(directory)
    except OSError:
        return 0
    return int(st.f_blocks * st.f_frsize)


def _event_filter(camera: str | None, since_ns: int | None, after_id: int) -> tuple[str, list[str | int]]:
    where, args = "id > ?", list[str | int]([after_id])
    if camera is not None:
        where += " AND camera = ?"
        args.append(camera)
    if since_ns is not None:
        where += " AND ts_ns >= ?"
        args.append(since_ns)
    return where, args


def open_readonly(path: Path, *, changing: bool = False) -> sqlite3.Connection:
    """Open for reading only; nothing is written, not even a WAL index, where that can be avoided.

    With a WAL file present (the daemon runs, or stopped without its final checkpoint) the WAL is read
    too, through ``mode=ro`` (that needs the WAL index, which the writer made). Without one the database
    file holds everything: ``immutable=1`` reads it without creating ``-wal``/``-shm`` files, which would
    be left behind owned by whoever ran ``edgeinfer events``. ``changing``: a daemon may start writing
    while this reader lasts (``events --follow``), so never ``immutable``, which would hide its writes."""
    wal = path.with_name(path.name + "-wal")
    uri = path.resolve().as_uri() + "?mode=ro" + ("" if wal.exists() or changing else "&immutable=1")
    try:
        db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA query_only = 1")
        db.execute("PRAGMA busy_timeout = 5000")  # a daemon committing now: wait, do not fail
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # opens the file now
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the local store {path}: {exc}") from exc
    return db


P = ParamSpec("P")
T = TypeVar("T")


class AsyncStore:
    """Runs every call of a :class:`Store` on one dedicated thread, awaited from the event loop."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgeinfer.store.sqlite")

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.store.close()
