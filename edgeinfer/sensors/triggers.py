"""Trigger rules: a sensor reading that satisfies a rule's condition raises a camera's frame rate."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from edgeinfer.config import TriggerConfig
from edgeinfer.lineprotocol import FieldValue

logger = logging.getLogger(__name__)


class Triggers:
    """Calls ``on_trigger(camera, fps, for_s)`` for every reading that satisfies a rule's condition.

    A rule holds while the reading is above ``above``, below ``below`` and equal to ``equals`` (those set);
    booleans count as 1 and 0. Every matching reading calls back again, so the receiver extends the window.
    """

    def __init__(self, rules: list[TriggerConfig], on_trigger: Callable[[str, float, float], None]) -> None:
        self.rules = rules
        self.on_trigger = on_trigger

    @staticmethod
    def holds(rule: TriggerConfig, value: FieldValue) -> bool:
        if isinstance(value, str):
            return False
        number = float(value)
        when = rule.when
        return (
            (when.above is None or number > when.above)
            and (when.below is None or number < when.below)
            and (when.equals is None or number == when.equals)
        )

    def check(self, values: Mapping[str, FieldValue]) -> None:
        for rule in self.rules:
            value = values.get(rule.when.series)
            if value is not None and self.holds(rule, value):
                try:
                    self.on_trigger(rule.camera, rule.fps, rule.for_s)
                except Exception:
                    logger.exception("trigger callback for camera %s failed", rule.camera)
