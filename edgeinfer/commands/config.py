"""edgeinfer config check FILE | config show [FILE]"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("config", help="validate or show a configuration")
    verbs = parser.add_subparsers(dest="config_verb", required=True, metavar="check|show")
    check = verbs.add_parser("check", help="validate a YAML config")
    check.add_argument("file")
    check.set_defaults(func=_check)
    show = verbs.add_parser("show", help="print the effective config (defaults filled, secrets redacted)")
    show.add_argument("file", nargs="?")
    show.set_defaults(func=_show)


def _check(args: argparse.Namespace) -> int:
    from edgeinfer.config import load_config

    config = load_config(args.file)
    print(f"{args.file}: ok ({len(config.cameras)} camera(s), detector {config.detector.model})")
    return 0


def _show(args: argparse.Namespace) -> int:
    from edgeinfer.config import dump_yaml, load_config

    print(dump_yaml(load_config(args.file)), end="")
    return 0
