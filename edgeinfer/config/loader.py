"""Loading a config: YAML, ``${ENV}`` substitution, and errors as ``file:line: yaml.path: what was expected``.

The YAML is parsed once: one pass composes the node tree (C parser when PyYAML has libyaml), the data is
constructed from it and error lines are looked up in it. The composer refuses what would blow up later:
nesting deeper than :data:`MAX_DEPTH` and aliases that expand to more than :data:`ALIAS_BUDGET` values
("billion laughs"); both are one clear line, as is a file that is not UTF-8.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from edgeinfer.config.schema import Config, FieldErrors
from edgeinfer.config.secrets import inline_secrets
from edgeinfer.errors import ConfigError

logger = logging.getLogger("edgeinfer.config")

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

MAX_DEPTH = 64
"""Deepest nesting of sequences and mappings (aliases expanded); a real config needs about 8."""
ALIAS_BUDGET = 100_000
"""Most values that aliases may add to the document when expanded; a real config adds a few hundred."""

Loc = tuple[str | int, ...]

if yaml.__with_libyaml__:  # pragma: no branch - both are exercised where they exist
    from yaml._yaml import CParser as _Parser

    class _Loader(_Parser, SafeConstructor, Resolver):
        def __init__(self, stream: str) -> None:
            _Parser.__init__(self, stream)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

else:  # pragma: no cover - PyYAML built without libyaml
    # the same class name on the pure-Python parser: mypy sees two definitions of one name
    class _Loader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, SafeConstructor, Resolver):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)


class _Refused(Exception):
    """The document is refused before it is built: ``line`` (1-based) and why."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


@dataclass
class _Anchor:
    node: Node
    open: bool = True
    size: int = 1  # values in the node once aliases are expanded
    height: int = 1  # nesting levels below and including the node, aliases expanded


def _compose(loader: Any) -> Node | None:
    """PyYAML's composer without recursion, with the depth and alias limits; None for an empty stream."""
    loader.get_event()  # StreamStartEvent
    if loader.check_event(StreamEndEvent):
        loader.get_event()
        return None
    document: Any = loader.get_event()  # DocumentStartEvent
    anchors: dict[str, _Anchor] = {}
    # Open collections: [node, flat children, expanded size, expanded height, anchor or None]
    stack: list[list[Any]] = []
    root: Node | None = None
    alias_values = 0

    def attach(node: Node, size: int, height: int) -> None:
        nonlocal root
        if stack:
            top = stack[-1]
            top[1].append(node)
            top[2] += size
            if height >= top[3]:
                top[3] = height + 1
        else:
            root = node

    resolve = loader.resolve
    while True:
        event: Any = loader.get_event()  # the stubs type events loosely; the loop checks kinds
        kind = type(event)
        if kind is ScalarEvent and event.anchor is None:  # most of a document: the fast path
            tag = event.tag
            if tag is None or tag == "!":
                tag = resolve(ScalarNode, event.value, event.implicit)
            scalar = ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
            if stack:
                top = stack[-1]
                top[1].append(scalar)
                top[2] += 1
                if top[3] < 2:
                    top[3] = 2
            else:
                root = scalar
            continue
        if kind is AliasEvent:
            line = event.start_mark.line + 1
            anchor = anchors.get(event.anchor)
            if anchor is None:
                raise yaml.composer.ComposerError(
                    None, None, f"found undefined alias {event.anchor!r}", event.start_mark
                )
            if anchor.open:
                raise _Refused(line, f"alias *{event.anchor} refers to a value that contains it (a loop)")
            alias_values += anchor.size
            if alias_values > ALIAS_BUDGET:
                raise _Refused(
                    line,
                    f"aliases expand to more than {ALIAS_BUDGET} values at *{event.anchor} "
                    "(nested aliases, a 'billion laughs'?): write the values out or use fewer aliases",
                )
            if len(stack) + anchor.height > MAX_DEPTH:
                raise _Refused(line, f"nested deeper than {MAX_DEPTH} levels (through alias *{event.anchor})")
            attach(anchor.node, anchor.size, anchor.height)
            continue
        if isinstance(event, MappingEndEvent | SequenceEndEvent):
            node, children, size, height, name = stack.pop()
            node.end_mark = event.end_mark
            node.value = (
                list(zip(children[::2], children[1::2], strict=True))
                if isinstance(node, MappingNode)
                else children
            )
            if name is not None:
                anchors[name].open, anchors[name].size, anchors[name].height = False, size, height
            attach(node, size, height)
            continue
        if isinstance(event, DocumentEndEvent):
            break
        name = event.anchor
        if name is not None and name in anchors:
            raise yaml.composer.ComposerError(
                f"found duplicate anchor {name!r}; first occurrence",
                anchors[name].node.start_mark,
                "second occurrence",
                event.start_mark,
            )
        tag = event.tag
        if kind is ScalarEvent:
            if tag is None or tag == "!":
                tag = resolve(ScalarNode, event.value, event.implicit)
            scalar = ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
            if name is not None:
                anchors[name] = _Anchor(scalar, open=False)
            attach(scalar, 1, 1)
            continue
        if len(stack) >= MAX_DEPTH:
            raise _Refused(event.start_mark.line + 1, f"nested deeper than {MAX_DEPTH} levels")
        node_kind = MappingNode if kind is MappingStartEvent else SequenceNode
        if tag is None or tag == "!":
            tag = resolve(node_kind, None, event.implicit)
        collection = node_kind(tag, [], event.start_mark, None, flow_style=event.flow_style)
        if name is not None:
            anchors[name] = _Anchor(collection)
        stack.append([collection, [], 1, 1, name])

    if not loader.check_event(StreamEndEvent):
        raise yaml.composer.ComposerError(
            "expected a single document in the stream",
            document.start_mark,
            "but found another document",
            loader.get_event().start_mark,
        )
    loader.get_event()
    return root


@dataclass
class Document:
    """A parsed YAML file: the data and the node tree it was built from (for lines)."""

    source: str
    data: Any
    root: Node | None = None

    def line_of(self, loc: Loc) -> int | None:
        """The 1-based line of the deepest part of ``loc`` that is in the file (a key's own line)."""
        node, line = self.root, None
        if node is not None:
            line = node.start_mark.line + 1
        for part in loc:
            if isinstance(node, MappingNode):
                # Last occurrence: a repeated key (or one after a merge) is the one the data holds.
                found = next((p for p in reversed(node.value) if str(p[0].value) == str(part)), None)
                if found is None:
                    break
                line, node = found[0].start_mark.line + 1, found[1]
            elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                break
        return line

    def render(self, loc: Loc, message: str) -> str:
        line = self.line_of(loc)
        return (
            f"{self.source}:{line}: {format_path(loc)}: {message}"
            if line
            else f"{self.source}: {format_path(loc)}: {message}"
        )


def _decode(raw: bytes, source: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{source}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {column}): "
            "save the file as UTF-8"
        ) from None
    bad = yaml.reader.Reader.NON_PRINTABLE.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        raise ConfigError(
            f"{source}:{line}: not valid YAML: character #x{ord(bad.group()):04x} is not allowed in YAML text"
        )
    return text


def parse_yaml(text: str, source: str) -> Document:
    """Parse ``text`` once into data and node tree. Raises ConfigError as ``source:line: ...``."""
    if not text:
        return Document(source, None)
    loader = _Loader(text)
    try:
        root = _compose(loader)
        data = loader.construct_document(root) if root is not None else None
    except _Refused as exc:
        raise ConfigError(f"{source}:{exc.line}: not accepted: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        lines, hint = text.splitlines(), ""
        if mark and lines and "${" in lines[min(mark.line, len(lines) - 1)]:
            # `{a: ${X}}` is YAML flow syntax, so the `{` of `${X}` breaks the mapping.
            hint = ' (inside {...} or [...], quote the variable: "${NAME}")'
        problem = exc.problem or exc.context or "cannot parse"
        raise ConfigError(f"{where}: not valid YAML: {problem}{hint}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {' '.join(str(exc).split())}") from None
    finally:
        loader.dispose()
    return Document(source, data, root)


def format_path(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _substitute_env(value: Any, path: Loc, errors: list[tuple[Loc, str]]) -> Any:
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


def _known_prefix(path: tuple[Any, ...], data: Any) -> Loc:
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


def _warn_if_readable(path: Path, document: Document, raw_data: Any) -> None:
    """Secrets written into a file that group or others can read: one warning naming the keys, never values."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    if not mode & 0o077:
        return
    found = inline_secrets(raw_data)
    if not found:
        return
    line = document.line_of(found[0])
    where = f"{document.source}:{line}" if line else document.source
    logger.warning(
        "%s: holds secrets inline (%s) and is readable by group/others (mode %04o): chmod 600 it, "
        "or move them to password_file/token_file or ${ENV}",
        where,
        ", ".join(format_path(loc) for loc in found),
        mode,
    )


@dataclass
class LoadedConfig:
    """A validated config with the document it came from, to point later checks at lines."""

    config: Config
    document: Document
    path: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def render(self, loc: Loc, message: str) -> str:
        return self.document.render(loc, message)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Building millions of small objects (a 10 MB YAML) triggers the cyclic GC over and over; nothing
    built here is a cycle (aliases that loop are refused), so it waits: 2-3x faster on large files."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load(path: str | Path | None = None, **overrides: Any) -> LoadedConfig:
    """Load and validate a YAML config with its document; ``None`` gives the embedded default."""
    with _collector_paused():
        return _load(path, overrides)


def _load(path: str | Path | None, overrides: dict[str, Any]) -> LoadedConfig:
    text, source = "", "<defaults>"
    file = Path(path) if path is not None else None
    if file is not None:
        source = str(path)
        try:
            raw = file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read config: {exc.strerror}") from None
        text = _decode(raw, source)
    document = parse_yaml(text, source)
    data = document.data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: expected a mapping of sections (cameras:, detector:, ...)")
    if file is not None:
        _warn_if_readable(file, document, data)

    env_errors: list[tuple[Loc, str]] = []
    data = _substitute_env(data, (), env_errors)
    given = {k: v for k, v in overrides.items() if v is not None}
    data.update(given)
    messages = list(env_errors)
    if not messages:
        try:
            return LoadedConfig(Config.model_validate(data), document, file, given)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                cause = (error.get("ctx") or {}).get("error")
                if isinstance(cause, FieldErrors):  # a validator that knows which keys are wrong
                    for sub, msg in cause.items:
                        messages.append((_known_prefix((*error["loc"], *sub), data), msg))
                    continue
                loc = _known_prefix(tuple(error["loc"]), data)
                messages.append((loc, error["msg"].removeprefix("Value error, ")))
    rendered = list(dict.fromkeys(document.render(loc, msg) for loc, msg in messages))
    raise ConfigError("\n".join(rendered))


def load_config(path: str | Path | None = None, **overrides: Any) -> Config:
    """Load and validate a YAML config; ``None`` gives the embedded default. Raises ConfigError."""
    return load(path, **overrides).config


def dump_yaml(config: Config) -> str:
    return yaml.safe_dump(config.redacted(), sort_keys=False, default_flow_style=None)
