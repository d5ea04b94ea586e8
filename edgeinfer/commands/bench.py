"""edgeinfer bench [--model bundled] [--cameras 4] [--batch 4] [--sweep] [--json PATH] [--csv PATH] [--plots DIR] ...

The harness lives in edgeinfer.bench (so it works from an installed wheel); this module only wires the verb.
"""

from __future__ import annotations

import argparse

# Help for the harness options that edgeinfer.bench.cli leaves without any (--help shows every option's).
_HELP = {
    "--backend": "inference runtime; auto picks it by the model file's suffix",
    "--max-delay-ms": "batching.max_delay_ms: longest a batch waits after its first frame",
    "--width": "synthetic frame width in pixels",
    "--height": "synthetic frame height in pixels",
    "--sweep-batches": "max_batch_size values of the sweep, comma-separated",
    "--sweep-cameras": "camera counts of the sweep, comma-separated",
}


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
    for action in parser._actions:
        if not action.help:
            action.help = next((_HELP[o] for o in action.option_strings if o in _HELP), None)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edgeinfer.bench.cli import run as bench_run
    from edgeinfer.commands._common import warn_if_timing_only

    if not args.compare:
        warn_if_timing_only(args.model)
    return bench_run(args)
