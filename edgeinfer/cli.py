"""The ``edgeinfer`` command line. Each verb lives in edgeinfer/commands/; this file only dispatches.

Library code raises EdgeInferError subclasses; here they become one line on stderr and an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeinfer",
        description="edgeinfer: on-device inference runtime for edge boxes (cameras -> INT8 YOLO -> MQTT / InfluxDB).",
    )
    parser.add_argument("--version", action="version", version=f"edgeinfer {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument(
        "--log-format", default="text", choices=["text", "json"], help="json: one object per line"
    )
    subparsers = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name in _VERBS:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            if exc.name != name:  # a verb's own dependency missing is a real error
                raise
            continue  # a verb that is not part of this build
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from edgeinfer.logs import setup_logging  # after parsing: --version and --help need no logging

    setup_logging(args.log_level, args.log_format)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(
            f"edgeinfer: config error:\n{exc}" if "\n" in str(exc) else f"edgeinfer: config error: {exc}",
            file=sys.stderr,
        )
        return 2
    except EdgeInferError as exc:
        print(f"edgeinfer: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `edgeinfer events --json | head`
        return 0
    return code
