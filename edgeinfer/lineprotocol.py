"""InfluxDB line protocol: formatting points the daemon writes (parsing lives with the sensor input)."""

from __future__ import annotations

import math
from collections.abc import Mapping

FieldValue = float | int | bool | str


def _escape_key(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", r"\,").replace("=", r"\=").replace(" ", r"\ ")


def _escape_measurement(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", r"\,").replace(" ", r"\ ")


def _field(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"field value {value!r} is not finite")
        return repr(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_point(
    measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue], ts_ns: int
) -> str:
    """One line of line protocol. Tags are sorted (InfluxDB's preferred order); empty tags are left out."""
    if not fields:
        raise ValueError("a point needs at least one field")
    head = _escape_measurement(measurement)
    for key in sorted(tags):
        if tags[key] != "":
            head += f",{_escape_key(key)}={_escape_key(str(tags[key]))}"
    body = ",".join(f"{_escape_key(k)}={_field(v)}" for k, v in fields.items())
    return f"{head} {body} {int(ts_ns)}"
