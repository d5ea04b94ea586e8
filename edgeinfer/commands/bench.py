"""edgeinfer bench [--model bundled] [--cameras 4] [--batch 4] [--sweep] [--json PATH] [--csv PATH] [--plots DIR] ...

The harness lives in edgeinfer.bench (so it works from an installed wheel); this module only wires the verb.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from edgeinfer.bench.cli import add_arguments  # argparse and dataclasses only; the harness is in run()

    parser = subparsers.add_parser(
        "bench",
        help="benchmark the pipeline (synthetic cameras) against bare invoke and a naive loop",
        description="Runs the real pipeline on synthetic cameras, plus two baselines in the same run: "
        "limit (bare invoke, back to back) and naive (one frame at a time). Each configuration runs "
        "in its own process; figures are medians over repeats with [min-max].",
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgeinfer.bench.cli import run as bench_run

    return bench_run(args)
