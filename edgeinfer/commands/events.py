"""edgeinfer events [--camera C] [--since T] [--limit N] [--json] [--data-dir D]: read the local store."""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from edgeinfer.errors import EdgeInferError

if TYPE_CHECKING:
    from edgeinfer.store.sqlite import StoredEvent


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("events", help="read detection events back from the local store")
    parser.add_argument("-c", "--config", help="take data_dir from this config")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--camera")
    parser.add_argument("--since", help="RFC3339 time (2026-11-26T10:00:00Z) or an age (10m, 2h, 1d)")
    parser.add_argument("--limit", type=int, help="at most N events (the newest N)")
    parser.add_argument("--json", action="store_true", help="one event object per line")
    parser.set_defaults(func=run)


def parse_since(text: str) -> int:
    """RFC3339 time or an age, as epoch nanoseconds."""
    from edgeinfer.config.units import parse_duration

    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            age = parse_duration(text)
        except ValueError:
            raise EdgeInferError(
                f"--since {text!r}: expected an RFC3339 time or an age such as 10m"
            ) from None
        return time.time_ns() - int(age * 1e9)
    if when.tzinfo is None:
        raise EdgeInferError(f"--since {text!r}: give a time zone (Z or +01:00)")
    return int(when.timestamp() * 1e9)


def format_event(event: StoredEvent) -> str:
    """The one-line text form: time, camera, sequence number, then ``label score`` per detection."""
    doc = event.doc
    found = ", ".join(f"{d['label']} {d['score']:.2f}" for d in doc["detections"])
    return f"{doc['ts']}  {event.camera:<12} #{doc['seq']:<6} {found}"


def run(args: argparse.Namespace) -> int:
    from edgeinfer.config import default_state_dir, load_config
    from edgeinfer.store.sqlite import STORE_FILE, Store

    data_dir = args.data_dir or (load_config(args.config).data_dir if args.config else default_state_dir())
    path = data_dir / STORE_FILE
    if not path.exists():
        raise EdgeInferError(f"no local store at {path} (has `edgeinfer run` written there?)")
    store = Store(path, readonly=True)  # writes nothing: works on a read-only store, leaves no files
    try:
        events = store.events(
            camera=args.camera,
            since_ns=parse_since(args.since) if args.since else None,
            limit=args.limit,
            newest_first=args.limit is not None,
        )
    finally:
        store.close()
    if args.limit is not None:
        events.reverse()
    for event in events:
        print(event.body if args.json else format_event(event))
    return 0
