"""The ``edgeinfer`` command line. Each verb lives in edgeinfer/commands/; this file only dispatches.

Library code raises EdgeInferError subclasses; here they become one line on stderr and an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import Any

from edgeinfer import __version__
from edgeinfer.errors import ConfigError, EdgeInferError

# Verb modules, each with add_parser(subparsers); imported explicitly, nothing registers by side effect.
# Building the parser imports only these and the standard library: each verb imports what it runs on
# (the daemon, cv2, paho, pydantic, a runtime) inside its run(), so --version and --help stay cheap
# (tests/unit/test_cli_startup.py holds them to that).
_VERBS = (
    "edgeinfer.commands.run",
    "edgeinfer.commands.detect",
    "edgeinfer.commands.events",
    "edgeinfer.commands.bench",
    "edgeinfer.commands.model",
    "edgeinfer.commands.config",
    "edgeinfer.commands.watch",
)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# Verbs that load a model or open cameras: native libraries (LiteRT, OpenCV, FFmpeg) print on the C-level
# stderr there, so edgeinfer.logs captures it into logging (one JSON object per line with --log-format json).
_NATIVE_VERBS = frozenset({"run", "detect", "bench", "model"})


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` after each option's help, except where there is nothing to show.

    No default (None), a flag's False, and help that already names its default are left as they are.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        nothing_to_show = any(action.default is v for v in (None, False, argparse.SUPPRESS))
        required_positional = not action.option_strings and action.nargs not in ("?", "*")
        if nothing_to_show or required_positional or "default" in text:
            return action.help
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def log_level(text: str) -> str:
    """--log-level in any case; WARN is WARNING."""
    level = text.upper()
    level = {"WARN": "WARNING"}.get(level, level)
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(LOG_LEVELS)} (any case)")
    return level


def _add_global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """--log-level and --log-format, before the verb (defaults set) or after it (SUPPRESS: not given
    there leaves what was given before the verb, or the default, in place)."""
    group = parser.add_argument_group("global options (before or after the verb)")
    group.add_argument(
        "--log-level",
        type=log_level,
        default="INFO" if defaults else argparse.SUPPRESS,
        metavar="{debug,info,warning,error}",
        help="least severe log records shown; any case" + (" (default: INFO)" if not defaults else ""),
    )
    group.add_argument(
        "--log-format",
        default="text" if defaults else argparse.SUPPRESS,
        choices=["text", "json"],
        help="text: local time with zone, level, logger, message; json: one object per line on stderr"
        + (" (default: text)" if not defaults else ""),
    )


class VerbParser(argparse.ArgumentParser):
    """The parser of each verb (and sub-verb): defaults shown in --help, the global options accepted."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(**kwargs)
        _add_global_options(self, defaults=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeinfer",
        description="edgeinfer: on-device inference runtime for edge boxes (cameras -> INT8 YOLO -> MQTT / InfluxDB).",
        epilog="edgeinfer VERB --help shows the options of a verb.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"edgeinfer {__version__}")
    _add_global_options(parser, defaults=True)
    subparsers = parser.add_subparsers(
        dest="verb", required=True, metavar="VERB", parser_class=VerbParser, help="what to do"
    )
    for name in _VERBS:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            if exc.name != name:  # a verb's own dependency missing is a real error
                raise
            continue  # a verb that is not part of this build
        module.add_parser(subparsers)
    return parser


def _report(message: str, log_format: str) -> None:
    """A user mistake: one line on stderr (one JSON object with --log-format json)."""
    if log_format == "json":
        logging.getLogger("edgeinfer").error("%s", message)
    else:
        print(message, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from edgeinfer.logs import setup_logging  # after parsing: --version and --help need no logging

    if args.verb == "run":  # before any thread: the daemon's threads would each grow a malloc arena
        from edgeinfer.memory import limit_malloc_arenas

        limit_malloc_arenas()
    native = setup_logging(args.log_level, args.log_format, capture_native=args.verb in _NATIVE_VERBS)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        _report(
            f"edgeinfer: config error:\n{exc}" if "\n" in str(exc) else f"edgeinfer: config error: {exc}",
            args.log_format,
        )
        return 2
    except EdgeInferError as exc:
        _report(f"edgeinfer: error: {exc}", args.log_format)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `edgeinfer events --json | head`
        return 0
    finally:
        if native is not None:
            native.close()
    return code
