"""Loading a config: YAML, ``${ENV}`` substitution, and errors as ``file:line: yaml.path: what was expected``."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edgeinfer.config.schema import Config
from edgeinfer.errors import ConfigError

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _yaml_lines(text: str) -> dict[tuple[Any, ...], int]:
    """Map each YAML path (tuple of keys and indexes) to its 1-based line."""
    lines: dict[tuple[Any, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, child in node.value:
                lines[(*path, key.value)] = key.start_mark.line + 1
                walk(child, (*path, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for index, child in enumerate(node.value):
                walk(child, (*path, index))

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
    return lines


def format_path(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _substitute_env(value: Any, path: tuple[Any, ...], errors: list[tuple[tuple[Any, ...], str]]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute_env(v, (*path, k), errors) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute_env(v, (*path, i), errors) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        errors.append((path, f"environment variable {name} is not set"))
        return ""

    return _ENV_REF.sub(replace, value)


def _known_prefix(path: tuple[Any, ...], data: Any) -> tuple[Any, ...]:
    """The part of a pydantic error location that exists in the YAML (drops union member names)."""
    known: list[Any] = []
    node = data
    for part in path:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        ):
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and known[-1:] != [part]:
            known.append(part)  # a missing required key: still worth naming
            break
        else:
            break
        known.append(part)
    return tuple(known)


def load_config(path: str | Path | None = None, **overrides: Any) -> Config:
    """Load and validate a YAML config; ``None`` gives the embedded default. Raises ConfigError."""
    text, source = "", "<defaults>"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read config: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text) if text else {}
        lines = _yaml_lines(text) if text else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        lines, hint = text.splitlines(), ""
        if mark and lines and "${" in lines[min(mark.line, len(lines) - 1)]:
            # `{a: ${X}}` is YAML flow syntax, so the `{` of `${X}` breaks the mapping.
            hint = ' (inside {...} or [...], quote the variable: "${NAME}")'
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}{hint}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: expected a mapping of sections (cameras:, detector:, ...)")

    env_errors: list[tuple[tuple[Any, ...], str]] = []
    data = _substitute_env(data, (), env_errors)
    data.update({k: v for k, v in overrides.items() if v is not None})
    messages = [(p, m) for p, m in env_errors]
    if not messages:
        try:
            return Config.model_validate(data)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                loc = _known_prefix(tuple(error["loc"]), data)
                messages.append((loc, error["msg"].removeprefix("Value error, ")))
    seen: set[str] = set()
    rendered = []
    for loc, msg in messages:
        line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), None)
        text_line = f"{source}:{line}: " if line else f"{source}: "
        entry = f"{text_line}{format_path(loc)}: {msg}"
        if entry not in seen:
            seen.add(entry)
            rendered.append(entry)
    raise ConfigError("\n".join(rendered))


def dump_yaml(config: Config) -> str:
    return yaml.safe_dump(config.redacted(), sort_keys=False, default_flow_style=None)
