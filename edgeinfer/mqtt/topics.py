"""MQTT topic templates: ``sensors/{site}/{sensor}`` levels as a subscription filter plus tags."""

from __future__ import annotations

import re

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class TopicTemplate:
    """``sensors/{site}/{sensor}`` -> subscription filter ``sensors/+/+`` and tags from matching topics."""

    def __init__(self, template: str) -> None:
        self.template = template
        levels = template.split("/")
        self._levels: list[tuple[str, str]] = []  # (kind, text): literal, plus, hash, tag
        for index, level in enumerate(levels):
            if level == "#":
                if index != len(levels) - 1:
                    raise ValueError(f"topic template {template!r}: '#' must be the last level")
                self._levels.append(("hash", level))
            elif level == "+":
                self._levels.append(("plus", level))
            elif level.startswith("{") and level.endswith("}") and _NAME.fullmatch(level[1:-1]):
                self._levels.append(("tag", level[1:-1]))
            elif any(c in level for c in "{}+#"):
                raise ValueError(
                    f"topic template {template!r}: level {level!r} must be literal, '+', '#' or {{name}}"
                )
            else:
                self._levels.append(("literal", level))
        if not template or "\0" in template:
            raise ValueError(f"topic template {template!r} is empty or has a NUL")
        self.filter = "/".join({"tag": "+"}.get(kind, text) for kind, text in self._levels)

    def match(self, topic: str) -> dict[str, str] | None:
        """The tags for a topic that matches, else None."""
        levels = topic.split("/")
        if topic.startswith("$") and self._levels and self._levels[0][0] != "literal":
            return None  # wildcards do not match $SYS-style topics
        tags: dict[str, str] = {}
        for index, (kind, text) in enumerate(self._levels):
            if kind == "hash":
                return tags
            if index >= len(levels):
                return None
            if kind == "literal" and levels[index] != text:
                return None
            if kind == "tag" and levels[index]:
                tags[text] = levels[index]
        return tags if len(levels) == len(self._levels) else None
