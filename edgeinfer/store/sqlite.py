"""The local store: an embedded SQLite database (WAL) that is the durable outbox of the device.

Every event and every measurement is committed here before it leaves the device. Two streams:

- ``events``: detection event JSON, one row per event (read back by ``edgeinfer events`` as
  :class:`StoredEvent`, drained to MQTT);
- ``points``: InfluxDB line protocol, one row per point (drained to InfluxDB).

Each sink keeps a cursor per stream (the highest row id the far side acknowledged). Rows stay after
delivery so the device keeps a local history; they leave only by retention age or the size cap, oldest
first, and rows that go before every sink had them are counted as ``dropped_undelivered``.

The class is synchronous and thread-safe (one connection, one lock); the daemon calls it from a single
dedicated thread (see :class:`AsyncStore`) so SQLite never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple, NotRequired, ParamSpec, TypedDict, TypeVar, cast

from edgeinfer.errors import StoreError

Stream = Literal["events", "points"]
STREAMS: tuple[Stream, ...] = ("events", "points")

STORE_FILE = "edgeinfer.db"  # in data_dir

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
_BODY_COLUMN = {"events": "body", "points": "line"}
_SEQ_COUNTER = "seq."  # counters row per camera: the highest event seq stored


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


@dataclass(frozen=True, slots=True)
class PruneResult:
    deleted: int
    undelivered: int


class Store:
    """The SQLite outbox. See the module docstring."""

    def __init__(self, path: Path, *, max_bytes: int = 512 * 2**20, retention_s: float = 7 * 86400) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.retention_s = retention_s
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            # auto_vacuum must be set before the first table exists; it lets pruning give pages back.
            self._db.execute("PRAGMA auto_vacuum = INCREMENTAL")
            self._db.execute("PRAGMA journal_mode = WAL")
            # NORMAL in WAL mode: a power cut may lose the last transactions, never corrupt the file.
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the local store {path}: {exc}") from exc

    # ----------------------------------------------------------------- writing

    def append(self, events: Sequence[EventRow] = (), points: Sequence[str | tuple[int, str]] = ()) -> None:
        """Commit events and points in one transaction. Points are lines, or (ts_ns, line) pairs."""
        now = time.time_ns()
        point_rows = [(p, now) if isinstance(p, str) else (p[1], p[0]) for p in points]
        seqs: dict[str, int] = {}
        for e in events:
            if e.seq is not None and e.seq > seqs.get(e.camera, -1):
                seqs[e.camera] = e.seq
        with self._tx() as db:
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

    # ----------------------------------------------------------------- reading

    def events(
        self,
        *,
        camera: str | None = None,
        since_ns: int | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[StoredEvent]:
        """Stored events, oldest first (or newest first), optionally of one camera and from a time on."""
        sql = "SELECT id, camera, ts_ns, body FROM events WHERE 1=1"
        args: list[str | int] = []
        if camera is not None:
            sql += " AND camera = ?"
            args.append(camera)
        if since_ns is not None:
            sql += " AND ts_ns >= ?"
            args.append(since_ns)
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
        sql = (
            f"SELECT id, {_BODY_COLUMN[stream]}, {camera} FROM {stream} "  # noqa: S608
            "WHERE id > ? ORDER BY id LIMIT ?"
        )
        with self._lock:
            return [OutboxRow(r[0], r[1], r[2]) for r in self._db.execute(sql, (start, limit))]

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
        with self._lock:
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
            page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
        wal = self.path.with_name(self.path.name + "-wal")
        wal_bytes = wal.stat().st_size if wal.exists() else 0
        return int((pages - free) * page_size + wal_bytes)

    def prune(self, now_ns: int | None = None) -> PruneResult:
        """Apply the retention age, then the size cap (oldest rows first). Returns what went."""
        now_ns = time.time_ns() if now_ns is None else now_ns
        cutoff = now_ns - int(self.retention_s * 1e9)
        deleted = undelivered = 0
        for stream in STREAMS:
            with self._lock:
                row = self._db.execute(
                    f"SELECT MAX(id) FROM {stream} WHERE ts_ns < ?",  # noqa: S608
                    (cutoff,),
                ).fetchone()
            if row[0] is not None:
                d, u = self._delete_upto(stream, int(row[0]))
                deleted, undelivered = deleted + d, undelivered + u
        for _ in range(64):  # each round drops ~10% of the oldest rows until under the cap
            if self.size_bytes() <= self.max_bytes:
                break
            self._checkpoint()
            if self.size_bytes() <= self.max_bytes:
                break
            removed = 0
            for stream in STREAMS:
                with self._lock:
                    lo, hi = self._db.execute(f"SELECT MIN(id), MAX(id) FROM {stream}").fetchone()  # noqa: S608
                if lo is None:
                    continue
                d, u = self._delete_upto(stream, lo + max(1, (hi - lo + 1) // 10) - 1)
                removed += d
                deleted, undelivered = deleted + d, undelivered + u
            with self._lock:
                self._db.execute("PRAGMA incremental_vacuum")
            if removed == 0:
                break
        return PruneResult(deleted, undelivered)

    def counters(self) -> dict[str, int]:
        with self._lock:
            return {name: int(value) for name, value in self._db.execute("SELECT name, value FROM counters")}

    def close(self) -> None:
        with self._lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._db.close()

    # ----------------------------------------------------------------- internals

    def _delete_upto(self, stream: Stream, upto_id: int) -> tuple[int, int]:
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
        return int(deleted), int(undelivered)

    def _checkpoint(self) -> None:
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

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
            raise StoreError(f"local store: {error}") from error
        finally:
            self._lock.release()
        if isinstance(exc, sqlite3.Error):  # a failed statement inside the transaction (disk full, ...)
            raise StoreError(f"local store: {exc}") from exc


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
