"""edgeinfer config check [-c] FILE [--offline] | config show [[-c] FILE]"""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("config", help="validate or show a configuration")
    verbs = parser.add_subparsers(dest="config_verb", required=True, metavar="check|show")
    check = verbs.add_parser(
        "check",
        help="validate a YAML config: schema, model file and its classes, files and folders",
        description="Validate a config without opening a camera: the schema, the model (loaded once, "
        "for its class names), the classes cameras name, video files, image folders and other files; "
        "host names are looked up in DNS unless --offline. Exit 2 on any error.",
    )
    _file_arguments(check)
    check.add_argument(
        "--offline", action="store_true", help="skip everything that touches the network (DNS)"
    )
    check.set_defaults(func=_check, verb_parser=check)
    show = verbs.add_parser("show", help="print the effective config (defaults filled, secrets redacted)")
    _file_arguments(show)
    show.set_defaults(func=_show, verb_parser=show)


def _file_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", metavar="FILE", help="the YAML config (or -c FILE)")
    parser.add_argument("-c", "--config", metavar="FILE", help="the YAML config, as for run and watch")


def _config_file(args: argparse.Namespace, *, required: bool) -> str | None:
    parser: argparse.ArgumentParser = args.verb_parser
    if args.file is not None and args.config is not None and args.file != args.config:
        parser.error(f"two config files given ({args.config} and {args.file}): give one")
    path: str | None = args.config if args.config is not None else args.file
    if path is None and required:
        parser.error("the config file is required: -c FILE (or FILE)")
    return path


def _check(args: argparse.Namespace) -> int:
    from edgeinfer.config.check import check_config
    from edgeinfer.config.loader import load
    from edgeinfer.errors import ConfigError

    path = _config_file(args, required=True)
    loaded = load(path)
    report = check_config(loaded, offline=args.offline)
    for finding in report.warnings:
        print(f"edgeinfer: warning: {loaded.render(finding.loc, finding.message)}", file=sys.stderr)
    if report.errors:
        in_file_order = sorted(report.errors, key=lambda f: loaded.document.line_of(f.loc) or 0)
        raise ConfigError("\n".join(dict.fromkeys(loaded.render(f.loc, f.message) for f in in_file_order)))
    config = loaded.config
    classes = f", {len(report.labels)} classes" if report.labels is not None else ""
    network = ", network not checked (--offline)" if args.offline else ""
    print(f"{path}: ok ({len(config.cameras)} camera(s), detector {config.detector.model}{classes}{network})")
    return 0


def _show(args: argparse.Namespace) -> int:
    from edgeinfer.config import dump_yaml, load_config

    print(dump_yaml(load_config(_config_file(args, required=False))), end="")
    return 0
