"""edgeinfer events [--camera C] [--since T] [--limit N] [--follow] [--json] [--data-dir D]: read the local store.

The store is opened read-only (``Store(readonly=True)``, SQLite ``mode=ro``): reading it never writes to it, so this is safe while
the daemon runs, and ``--follow`` polls it for rows newer than the last one shown.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgeinfer.errors import EdgeInferError

if TYPE_CHECKING:
    from edgeinfer.store.sqlite import Store, StoredEvent

DEFAULT_LIMIT = 100
POLL_S = 0.5
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "events",
        help="read detection events back from the local store",
        description="Print the events in the local store, oldest first; times in the local time zone "
        "(--json: each event as stored, its ts in UTC).",
    )
    parser.add_argument("-c", "--config", help="take data_dir from this config")
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="the store's folder (default: the config's data_dir, else $XDG_STATE_HOME/edgeinfer or "
        "~/.local/state/edgeinfer)",
    )
    parser.add_argument("--camera", help="only this camera's events (default: all)")
    parser.add_argument(
        "--since",
        help="from this time on: RFC3339 (2026-11-26T10:00:00Z), a local date (2026-12-01: its local "
        "midnight) or local time (2026-12-01T08:30), or an age (10m, 2h, 1d) (default: all)",
    )
    parser.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_LIMIT,
        metavar="N",
        help="the newest N events; 0 for all",
    )
    parser.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="then keep printing new events as they are stored (Ctrl-C stops)",
    )
    parser.add_argument("--json", action="store_true", help="one event object per line, as stored")
    parser.set_defaults(func=run)


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number (0 for all)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 0 (all) or more")
    return value


def parse_since(text: str) -> int:
    """RFC3339 time, a local date or date-time, or an age, as epoch nanoseconds."""
    from edgeinfer.config.units import parse_duration

    if _DATE.match(text.strip()):
        text = text.strip() + "T00:00:00"
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            age = parse_duration(text)
        except ValueError:
            raise EdgeInferError(
                f"--since {text!r}: expected an RFC3339 time or an age such as 10m, or a date (2026-12-01)"
            ) from None
        return time.time_ns() - int(age * 1e9)
    if when.tzinfo is None:
        when = when.astimezone()  # a local date or time: the zone it had then
    return int(when.timestamp() * 1e9)


def local_time(ts: str, fallback_ns: int | None = None) -> str:
    """A stored UTC ``ts`` in the local time zone, with the zone (``...Z`` where local time is UTC)."""
    from edgeinfer.timefmt import rfc3339_local_ms

    try:
        when = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except (TypeError, ValueError):
        return ts if fallback_ns is None else rfc3339_local_ms(fallback_ns)
    if when.tzinfo is None:
        return ts
    seconds = int(when.timestamp())
    return rfc3339_local_ms(seconds * 1_000_000_000 + when.microsecond * 1000)


def format_detections(doc: Mapping[str, Any]) -> str:
    """``label score`` per detection, with ``#track_id`` where the detection belongs to a track (its
    snapshot: /api/snapshots/{camera}/{track_id}.jpg)."""
    return ", ".join(
        f"{d['label']} {d['score']:.2f}" + (f" #{d['track_id']}" if d.get("track_id") else "")
        for d in doc.get("detections") or []
    )


def format_doc(doc: Mapping[str, Any], camera: str | None = None, ts_ns: int | None = None) -> str:
    """The one-line text form of an event document: local time, camera, seq, ``label score``s."""
    cam = camera if camera is not None else str(doc.get("camera", "?"))
    return f"{local_time(str(doc.get('ts')), ts_ns)}  {cam:<12} #{doc.get('seq', '?')!s:<6} {format_detections(doc)}"


def format_event(event: StoredEvent) -> str:
    """The one-line text form: time, camera, sequence number, then ``label score`` per detection."""
    return format_doc(event.doc, event.camera, event.ts_ns)


# --------------------------------------------------------------------------- reading, read-only


def read_events(
    store: Store, *, camera: str | None = None, since_ns: int | None = None, limit: int = 0, after_id: int = 0
) -> list[StoredEvent]:
    """Events oldest first; with ``limit``, the newest ``limit`` of them (still oldest first)."""
    import sqlite3

    try:
        if limit:
            events = store.events(
                camera=camera, since_ns=since_ns, limit=limit, newest_first=True, after_id=after_id
            )
            events.reverse()
            return events
        return store.events(camera=camera, since_ns=since_ns, after_id=after_id)
    except sqlite3.Error as exc:
        raise EdgeInferError(f"cannot read the local store: {exc}") from None


def run(args: argparse.Namespace) -> int:
    from edgeinfer.config import default_state_dir, load_config
    from edgeinfer.store.sqlite import STORE_FILE, Store

    data_dir = args.data_dir or (load_config(args.config).data_dir if args.config else default_state_dir())
    path = data_dir / STORE_FILE
    if not path.exists():
        raise EdgeInferError(f"no local store at {path} (has `edgeinfer run` written there?)")
    since_ns = parse_since(args.since) if args.since else None
    # writes nothing: works on a read-only store; --follow: a daemon may write meanwhile
    store = Store(path, readonly=True, changing=args.follow)
    try:
        if args.camera is not None and args.camera not in (cameras := store.cameras()):
            known = f"cameras in it: {', '.join(cameras)}" if cameras else "it has no events yet"
            message = f"no events from camera {args.camera!r} in {path} ({known})"
            if not args.follow:
                raise EdgeInferError(message)
            print(f"edgeinfer events: {message}; waiting for some", file=sys.stderr)
        events = read_events(store, camera=args.camera, since_ns=since_ns, limit=args.limit)
        _print(events, args.json)
        if args.limit and len(events) == args.limit and not args.follow:
            total = store.count_events(camera=args.camera, since_ns=since_ns)
            if total > len(events):
                print(
                    f"edgeinfer events: the newest {len(events)} of {total}; --limit 0 shows all",
                    file=sys.stderr,
                )
        if args.follow:
            last = events[-1].id if events else store.last_event_id()
            try:
                while True:
                    time.sleep(POLL_S)
                    new = read_events(store, camera=args.camera, since_ns=since_ns, after_id=last)
                    if new:
                        _print(new, args.json)
                        last = new[-1].id
            except KeyboardInterrupt:
                return 0
    finally:
        store.close()
    return 0


def _print(events: list[StoredEvent], as_json: bool) -> None:
    for event in events:
        print(event.body if as_json else format_event(event))
    sys.stdout.flush()
