"""InfluxDB line protocol: formatting points the daemon writes (parsing lives with the sensor input)."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

FieldValue = float | int | bool | str

# The daemon's own measurements: sensor input may never write them (see edgeinfer.sensors.parse).
# ``objects`` and ``tracks`` are reserved for the planned tracking outputs.
DAEMON_MEASUREMENTS = frozenset({"detections", "inference", "objects", "tracks"})


def is_daemon_measurement(name: str) -> bool:
    """One of :data:`DAEMON_MEASUREMENTS`, or one of them followed by ``_``: VictoriaMetrics names a series
    ``{measurement}_{field}``, so ``detections_max`` with field ``score`` is ``detections_max_score``."""
    return name in DAEMON_MEASUREMENTS or name.partition("_")[0] in DAEMON_MEASUREMENTS


REPLACEMENT = "\ufffd"
# What line protocol cannot carry in a name (measurement, tag key or value, field key): a line break ends
# the line in every parser (VictoriaMetrics splits on "\n" before anything else, quotes or not), the other
# control characters are refused or mangled by some of them, and a lone surrogate cannot be encoded as
# UTF-8 at all. Each such character becomes U+FFFD. (A '"' in a field key is valid line protocol, but
# VictoriaMetrics' parser takes it for the start of a string and loses the value: sensor input refuses
# such keys, and the daemon's own keys never have one.)
_NOT_IN_NAMES = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# In a string field value a tab is fine (it is inside quotes); line breaks and the rest are not.
_NOT_IN_STRINGS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")


def carried(text: str, part: str = "tag") -> str:
    """``text`` as a TSDB reads it back after :func:`format_point` wrote it as a ``part``.

    ``part`` is ``"measurement"``, ``"tag"`` (key or value), ``"field"`` (a key) or ``"string"``
    (a string field value). The identity for every text without characters line protocol cannot carry;
    each of those becomes U+FFFD, and so does a leading ``#`` of a measurement (the line would read as a
    comment). Never raises.
    """
    text = (_NOT_IN_STRINGS if part == "string" else _NOT_IN_NAMES).sub(REPLACEMENT, text)
    if part == "measurement" and text.startswith("#"):
        text = REPLACEMENT + text[1:]
    return text


def _escape(text: str, specials: str) -> str:
    text = text.replace("\\", "\\\\")
    for char in specials:
        text = text.replace(char, "\\" + char)
    return text


# Cached: the same few keys, tag values and measurement names repeat in every point the daemon writes.
@functools.lru_cache(maxsize=4096)
def _escape_key(text: str) -> str:
    return _escape(carried(text), ",= ")


@functools.lru_cache(maxsize=1024)
def _escape_field_key(text: str) -> str:
    return _escape(carried(text, "field"), ",= ")


@functools.lru_cache(maxsize=256)
def _escape_measurement(text: str) -> str:
    return _escape(carried(text, "measurement"), ", ")


def _field(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"field value {value!r} is not finite")
        return repr(value)
    return '"' + _escape(carried(value, "string"), '"') + '"'


def format_point(
    measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue], ts_ns: int
) -> str:
    """One line of line protocol. Tags are sorted (InfluxDB's preferred order); empty tags are left out.

    Whatever the names hold, the result is exactly one line that every parser reads as the same point:
    characters line protocol cannot carry are replaced (see :func:`carried`; two keys that become the
    same keep the later value), the rest is escaped. Raises ValueError for an empty measurement, tag key
    or field key, no fields, or a non-finite float.
    """
    if not fields:
        raise ValueError("a point needs at least one field")
    if not measurement:
        raise ValueError("empty measurement")
    tag_parts: dict[str, str] = {}
    for key in sorted(tags):
        if not key:
            raise ValueError("empty tag key")
        tag = str(tags[key])
        if tag != "":
            tag_parts[_escape_key(key)] = _escape_key(tag)
    field_parts: dict[str, str] = {}
    for key, value in fields.items():
        if not key:
            raise ValueError("empty field key")
        field_parts[_escape_field_key(key)] = _field(value)
    head = "".join([_escape_measurement(measurement), *(f",{k}={v}" for k, v in tag_parts.items())])
    body = ",".join(f"{k}={v}" for k, v in field_parts.items())
    return f"{head} {body} {int(ts_ns)}"


# --------------------------------------------------------------------------- parsing (sensor input)

_INT64_MAX = 2**63 - 1
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+i")
_UNSIGNED = re.compile(r"\d+u")
_TIMESTAMP = re.compile(r"-?\d+")
_TRUE = {"t", "T", "true", "True", "TRUE"}
_FALSE = {"f", "F", "false", "False", "FALSE"}


class LineProtocolError(ValueError):
    """A line that InfluxDB would reject; the message says what is wrong (never echoes more than 80 chars)."""


@dataclass(frozen=True, slots=True)
class ParsedPoint:
    measurement: str
    tags: dict[str, str]
    fields: dict[str, FieldValue]
    ts_ns: int | None  # None: the line has no timestamp (the receiver picks one)


def _split(text: str, sep: str, *, quoted: bool, maxsplit: int = -1) -> list[str]:
    """Split on ``sep`` where it is not backslash-escaped (nor inside a "string" when ``quoted``)."""
    parts: list[str] = []
    start, i, in_string = 0, 0, False
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            i += 2
            continue
        if quoted and char == '"' and (in_string or (i > 0 and text[i - 1] == "=")):
            in_string = not in_string  # a string opens only where a field value starts
        elif char == sep and not in_string and (maxsplit < 0 or len(parts) < maxsplit):
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if in_string:
        raise LineProtocolError("unterminated string field value")
    parts.append(text[start:])
    return parts


def _unescape(text: str, chars: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in chars:
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _parse_field_value(raw: str, key: str) -> FieldValue:
    if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
        return _unescape(raw[1:-1], '"\\')
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    if _INTEGER.fullmatch(raw) or _UNSIGNED.fullmatch(raw):
        value = int(raw[:-1])
        if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
            raise LineProtocolError(f"field {key!r}: integer out of range")
        return value
    if _FLOAT.fullmatch(raw):
        number = float(raw)
        if not math.isfinite(number):
            raise LineProtocolError(f"field {key!r}: value is not finite")
        return number
    raise LineProtocolError(f"field {key!r}: invalid value {raw[:80]!r}")


def parse_line(line: str) -> ParsedPoint:
    """Parse one line of InfluxDB line protocol (measurement[,tag=v...] field=v[,...] [timestamp_ns])."""
    if any(ord(c) < 32 and c != "\t" for c in line):
        raise LineProtocolError("control character in line")
    head_and_rest = _split(line, " ", quoted=False, maxsplit=1)
    if len(head_and_rest) != 2 or not head_and_rest[0]:
        raise LineProtocolError("expected 'measurement field=value'")
    head, rest = head_and_rest
    head_parts = _split(head, ",", quoted=False)
    measurement = _unescape(head_parts[0], ", \\")
    if not measurement:
        raise LineProtocolError("empty measurement")
    tags: dict[str, str] = {}
    for part in head_parts[1:]:
        pair = _split(part, "=", quoted=False)
        if len(pair) != 2 or not pair[0] or not pair[1]:
            raise LineProtocolError(f"invalid tag {part[:80]!r}")
        tags[_unescape(pair[0], ",= \\")] = _unescape(pair[1], ",= \\")
    field_and_ts = _split(rest, " ", quoted=True, maxsplit=1)
    fields: dict[str, FieldValue] = {}
    for part in _split(field_and_ts[0], ",", quoted=True):
        pair = _split(part, "=", quoted=True, maxsplit=1)
        if len(pair) != 2 or not pair[0] or not pair[1]:
            raise LineProtocolError(f"invalid field {part[:80]!r}")
        key = _unescape(pair[0], ",= \\")
        fields[key] = _parse_field_value(pair[1], key)
    ts_ns = None
    if len(field_and_ts) == 2:
        raw_ts = field_and_ts[1].strip(" ")
        if raw_ts:
            if not _TIMESTAMP.fullmatch(raw_ts) or abs(int(raw_ts)) > _INT64_MAX:
                raise LineProtocolError(f"invalid timestamp {raw_ts[:80]!r}")
            ts_ns = int(raw_ts)
    return ParsedPoint(measurement, tags, fields, ts_ns)


def parse_lines(text: str) -> list[ParsedPoint]:
    """Parse every non-blank, non-comment line; the first bad line raises LineProtocolError."""
    points = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip() or line.lstrip(" \t").startswith("#"):  # "\u3000#" is no comment
            continue
        try:
            points.append(parse_line(line))
        except LineProtocolError as exc:
            raise LineProtocolError(f"line {number}: {exc}") from None
    return points
