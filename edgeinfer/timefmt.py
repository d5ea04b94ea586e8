"""RFC 3339 timestamps as edgeinfer writes them everywhere (events, stats, JSON logs).

UTC, millisecond precision (truncated, not rounded), ``Z``: ``2026-11-26T10:00:00.123Z``; the ``ts``
pattern of schemas/detection-event.schema.json. Standard library only: the CLI imports it at start-up.
"""

from __future__ import annotations

import time

__all__ = ["rfc3339_local_ms", "rfc3339_ms", "rfc3339_now"]


def rfc3339_ms(wall_ns: int) -> str:
    """Epoch nanoseconds as ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    seconds, ns = divmod(wall_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ns // 1_000_000:03d}Z"


def rfc3339_local_ms(wall_ns: int) -> str:
    """Epoch nanoseconds in the local time zone, for people: ``YYYY-MM-DDTHH:MM:SS.mmm+01:00``.

    The same instant as :func:`rfc3339_ms` (and the very same text, ``...Z``, where local time is UTC);
    the offset is the zone's at that instant (summer time included).
    """
    seconds, ns = divmod(wall_ns, 1_000_000_000)
    local = time.localtime(seconds)
    offset = local.tm_gmtoff
    if offset == 0:
        zone = "Z"
    else:
        hours, minutes = divmod(abs(offset) // 60, 60)
        zone = f"{'+' if offset > 0 else '-'}{hours:02d}:{minutes:02d}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", local) + f".{ns // 1_000_000:03d}{zone}"


def rfc3339_now() -> str:
    """The current wall-clock time, formatted by :func:`rfc3339_ms`."""
    return rfc3339_ms(time.time_ns())
