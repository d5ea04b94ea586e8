"""The sensor context: the latest value of each sensor series, which events name in their ``context``.

Series keys are those of :mod:`edgeinfer.sensors.parse` (``{topic}`` or ``{topic}/{field}``).
"""

from __future__ import annotations

from collections.abc import Mapping

from edgeinfer.lineprotocol import FieldValue


class SensorContext:
    """The latest value of each sensor series. Event-loop only (no lock)."""

    def __init__(self) -> None:
        self._latest: dict[str, FieldValue] = {}

    def update(self, values: Mapping[str, FieldValue]) -> None:
        """Readings in arrival order: each value replaces the series' previous one."""
        self._latest.update(values)

    def latest(self, series: str) -> FieldValue | None:
        return self._latest.get(series)
