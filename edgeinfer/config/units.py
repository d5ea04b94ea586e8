"""Values with units in the config: sizes (``512MiB``) and durations (``7d``)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_with_units(value: Any, units: dict[str, int], what: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a {what}, got a boolean")
    if isinstance(value, int | float):
        return float(value)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in units:
        raise ValueError(f"expected a {what} such as {' or '.join(_EXAMPLES[what])}, got {value!r}")
    return float(match.group(1)) * units[match.group(2).lower()]


_EXAMPLES = {"size": ["512MiB", "2GB", "1048576"], "duration": ["7d", "12h", "30m", "45s"]}


def parse_duration(value: Any) -> float:
    """``7d``, ``12h``, ``30m``, ``45s`` or a number of seconds; ValueError names the expected forms."""
    return parse_with_units(value, DURATION_UNITS, "duration")


def parse_size(value: Any) -> int:
    """``512MiB``, ``2GB`` or a number of bytes; ValueError names the expected forms."""
    return int(parse_with_units(value, SIZE_UNITS, "size"))


ByteSize = Annotated[int, BeforeValidator(parse_size)]
Duration = Annotated[float, BeforeValidator(parse_duration)]
