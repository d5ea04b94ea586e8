"""Sensor payloads to points: topic templates and the three payload formats, with validation.

Topic templates work like Telegraf's topic parsing: each ``{name}`` level of ``sensors/{site}/{sensor}``
is subscribed as ``+`` and its value becomes a tag (an empty level gives no tag); ``+`` and a final ``#``
are accepted as is and give no tag.

Payload formats (``format:`` of a subscription):

- ``json``: an object. Numbers become float fields (always float, so ``21`` and ``21.5`` never conflict),
  booleans become boolean fields, nested objects are flattened with ``_`` (``{"a": {"b": 1}}`` gives
  ``a_b``) up to :data:`MAX_DEPTH` levels; strings and nulls are ignored unless the key is a configured tag;
  arrays are rejected. The optional ``timestamp_key`` holds the reading time as RFC 3339 or epoch seconds,
  ms, us or ns (told apart by magnitude).
- ``value``: a bare number, stored as field ``value``.
- ``line``: InfluxDB line protocol, one or more lines; the line's tags and timestamp are kept and the
  template's tags are added where the line has no tag of that name. The measurement written is the
  subscription's ``measurement``, or the line's own where it is one of the subscription's
  ``measurements``: a sensor cannot write into another measurement. A line naming one of the daemon's own
  measurements (:data:`~edgeinfer.lineprotocol.DAEMON_MEASUREMENTS`: ``detections``, ``inference``,
  ``objects``, ``tracks``, also with a ``_`` suffix) rejects the message (``reserved_measurement``).

Readings without a timestamp get the time they were received.

Series keys (for :class:`~edgeinfer.sensors.context.SensorContext` and trigger rules): ``{topic}`` for
``value`` payloads, ``{topic}/{field}`` for ``json`` and ``line`` fields, e.g. ``sensors/hall/pir/motion``.

Anything else raises :class:`Rejected` with one of :data:`REASONS`; the caller counts and drops it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from edgeinfer.config import SensorSubscription
from edgeinfer.lineprotocol import (
    FieldValue,
    LineProtocolError,
    format_point,
    is_daemon_measurement,
    parse_lines,
)
from edgeinfer.mqtt.topics import TopicTemplate

MAX_DEPTH = 4
MAX_FIELDS = 256
MAX_TAG_LENGTH = 256
_MIN_TS_NS = 946_684_800 * 10**9  # 2000-01-01
_MAX_TS_NS = 7_258_118_400 * 10**9  # 2200-01-01
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NON_FINITE_WORDS = {"nan", "inf", "infinity"}

REASONS = (
    "oversized",
    "not_utf8",
    "not_json",
    "too_deep",
    "not_object",
    "not_number",
    "non_finite",
    "bad_type",
    "bad_tag",
    "bad_field",
    "bad_timestamp",
    "no_fields",
    "too_many_fields",
    "bad_line",
    "reserved_measurement",
    "unknown_topic",
)


class Rejected(Exception):
    """A payload that is dropped: ``reason`` is one of REASONS, ``detail`` a short explanation."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class Parsed:
    lines: list[tuple[int, str]] = field(default_factory=list)  # (ts_ns, line protocol)
    values: dict[str, FieldValue] = field(default_factory=dict)  # series key -> latest value


def _check_text(value: str, what: str, reason: str) -> str:
    if not value or len(value) > MAX_TAG_LENGTH or any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise Rejected(reason, f"{what} {value[:40]!r} is empty, too long or has control characters")
    return value


def _field_key(name: str) -> str:
    # Valid line protocol, but VictoriaMetrics' parser reads a '"' in a field key as the start of a string
    # and loses the value (see edgeinfer.lineprotocol): refused like a control character.
    if '"' in name:
        raise Rejected("bad_field", f"field {name[:40]!r} has a double quote")
    return _check_text(name, "field", "bad_field")


def _reject_constant(name: str) -> Any:
    raise Rejected("non_finite", f"{name} is not a finite number")


def _number(value: Any, key: str) -> float:
    try:
        number = float(value)
    except OverflowError:
        raise Rejected("non_finite", f"field {key!r} is out of range") from None
    if not math.isfinite(number):
        raise Rejected("non_finite", f"field {key!r} is not finite")
    return number


def _timestamp(value: Any) -> int:
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        raise Rejected("bad_timestamp", f"timestamp of type {type(value).__name__}")
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise Rejected("bad_timestamp", f"{value[:40]!r} is not RFC 3339") from None
        if moment.tzinfo is None:
            raise Rejected("bad_timestamp", f"{value[:40]!r} has no time zone")
        ts_ns = int(moment.timestamp() * 1e6) * 1000
    else:
        number = _number(value, "timestamp")
        magnitude = abs(number)
        scale = 1e9 if magnitude < 1e11 else 1e6 if magnitude < 1e14 else 1e3 if magnitude < 1e17 else 1
        ts_ns = int(value * int(scale)) if isinstance(value, int) else int(number * scale)
    if not _MIN_TS_NS <= ts_ns <= _MAX_TS_NS:
        raise Rejected("bad_timestamp", "timestamp before 2000 or after 2200")
    return ts_ns


def _flatten(
    doc: dict[str, Any], prefix: str, depth: int, out: dict[str, FieldValue], skip: set[str]
) -> None:
    if depth > MAX_DEPTH:
        raise Rejected("too_deep", f"objects nested deeper than {MAX_DEPTH} levels")
    for key, value in doc.items():
        if depth == 1 and key in skip:
            continue
        name = f"{prefix}_{key}" if prefix else key
        if isinstance(value, bool):
            out[_field_key(name)] = value
        elif isinstance(value, int | float):
            out[_field_key(name)] = _number(value, name)
        elif isinstance(value, dict):
            _flatten(value, name, depth + 1, out, skip)
        elif isinstance(value, list):
            raise Rejected("bad_type", f"field {name[:40]!r} is an array")
        # strings and nulls: not fields (free text does not belong in a time series)
        if len(out) > MAX_FIELDS:
            raise Rejected("too_many_fields", f"more than {MAX_FIELDS} fields")


def _tag_value(value: Any, key: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _check_text(
            repr(_number(value, key)) if isinstance(value, float) else str(value), key, "bad_tag"
        )
    if isinstance(value, str):
        return _check_text(value, f"tag {key!r}", "bad_tag") if value else None
    raise Rejected("bad_tag", f"tag {key!r} is a {type(value).__name__}")


def _parse_json(sub: SensorSubscription, topic: str, tags: dict[str, str], text: str, now_ns: int) -> Parsed:
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise Rejected("too_deep", "nesting too deep to parse") from None
    except ValueError as exc:
        raise Rejected("not_json", str(exc)[:80]) from None
    if not isinstance(doc, dict):
        raise Rejected("not_object", f"a JSON {type(doc).__name__}, expected an object")
    tags = dict(tags)
    for key in sub.tags:
        value = _tag_value(doc.get(key), key)
        if value is not None:
            tags[key] = value
    ts_ns = now_ns
    if sub.timestamp_key is not None and sub.timestamp_key in doc:
        ts_ns = _timestamp(doc[sub.timestamp_key])
    fields: dict[str, FieldValue] = {}
    _flatten(doc, "", 1, fields, {*sub.tags, *([sub.timestamp_key] if sub.timestamp_key else [])})
    if not fields:
        raise Rejected("no_fields", "no numeric or boolean fields")
    line = format_point(sub.measurement, tags, fields, ts_ns)
    return Parsed([(ts_ns, line)], {f"{topic}/{k}": v for k, v in fields.items()})


def _parse_value(sub: SensorSubscription, topic: str, tags: dict[str, str], text: str, now_ns: int) -> Parsed:
    stripped = text.strip()
    if stripped.lower().lstrip("+-") in _NON_FINITE_WORDS:
        raise Rejected("non_finite", f"{stripped[:20]!r} is not a finite number")
    if not _NUMBER.fullmatch(stripped):
        raise Rejected("not_number", f"{stripped[:40]!r} is not a number")
    value = _number(stripped, "value")
    return Parsed([(now_ns, format_point(sub.measurement, tags, {"value": value}, now_ns))], {topic: value})


def _parse_line(sub: SensorSubscription, topic: str, tags: dict[str, str], text: str, now_ns: int) -> Parsed:
    try:
        points = parse_lines(text)
    except LineProtocolError as exc:
        raise Rejected("bad_line", str(exc)[:120]) from None
    if not points:
        raise Rejected("no_fields", "no lines")
    if sum(len(p.fields) for p in points) > MAX_FIELDS:
        raise Rejected("too_many_fields", f"more than {MAX_FIELDS} fields")
    parsed = Parsed()
    for point in points:
        _check_text(point.measurement, "measurement", "bad_line")
        if is_daemon_measurement(point.measurement):
            raise Rejected(
                "reserved_measurement", f"{point.measurement[:40]!r} is the daemon's own measurement"
            )
        measurement = point.measurement if point.measurement in sub.measurements else sub.measurement
        merged = {**tags, **point.tags}
        for key, value in merged.items():
            _check_text(key, "tag key", "bad_tag")
            _check_text(value, f"tag {key!r}", "bad_tag")
        for key in point.fields:
            _field_key(key)
        ts_ns = now_ns if point.ts_ns is None else point.ts_ns
        if not _MIN_TS_NS <= ts_ns <= _MAX_TS_NS:
            raise Rejected("bad_timestamp", "timestamp (ns) before 2000 or after 2200")
        parsed.lines.append((ts_ns, format_point(measurement, merged, point.fields, ts_ns)))
        parsed.values.update({f"{topic}/{k}": v for k, v in point.fields.items()})
    return parsed


def check_subscription(sub: SensorSubscription) -> None:
    """Raise ValueError where a subscription would write one of the daemon's own measurements."""
    for name in (sub.measurement, *sub.measurements):
        if not name or any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise ValueError(
                f"subscription {sub.topic!r}: measurement {name[:40]!r} is empty or has control characters"
            )
        if is_daemon_measurement(name):
            raise ValueError(
                f"subscription {sub.topic!r}: measurement {name!r} is the daemon's own "
                "(detections, inference, objects, tracks and their NAME_... forms are reserved)"
            )


_PARSERS = {"json": _parse_json, "value": _parse_value, "line": _parse_line}


def parse_payload(
    sub: SensorSubscription,
    template: TopicTemplate,
    topic: str,
    payload: bytes,
    *,
    now_ns: int,
    max_bytes: int,
) -> Parsed:
    """Validate one message of a subscription and turn it into points. Raises Rejected."""
    if len(payload) > max_bytes:
        raise Rejected("oversized", f"{len(payload)} bytes, the limit is {max_bytes}")
    tags = template.match(topic)
    if tags is None:
        raise Rejected("unknown_topic", "topic does not match the subscription")
    for key, value in tags.items():
        _check_text(value, f"topic level {key!r}", "bad_tag")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected("not_utf8", "payload is not UTF-8") from None
    if "\0" in text:
        raise Rejected("not_utf8", "payload contains NUL")
    return _PARSERS[sub.format](sub, topic, tags, text, now_ns)
