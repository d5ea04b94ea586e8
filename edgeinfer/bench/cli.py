"""The arguments and entry point shared by ``edgeinfer bench`` and ``benchmarks/bench.py``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgeinfer.bench.spec import RunSpec
from edgeinfer.detect.backends.names import BACKEND_NAMES


def _fps(value: str) -> float | None:
    if value.lower() in ("none", "max", "unlimited", "0"):
        return None
    fps = float(value)
    if fps <= 0:
        raise argparse.ArgumentTypeError("fps must be positive (or 'none' for unlimited)")
    return fps


def _int_list(value: str) -> list[int]:
    try:
        items = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None
    if not items or min(items) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {value!r}")
    return items


def _count(value: str) -> int | None:
    """A positive integer, or auto (None)."""
    if value.lower() == "auto":
        return None
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or auto, got {value!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or auto, got {value!r}")
    return count


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = RunSpec()
    g = parser.add_argument_group("configuration")
    g.add_argument("--model", default=d.model, help="'bundled', a bundled model name, or a model path")
    g.add_argument("--backend", default=d.backend, choices=BACKEND_NAMES)
    g.add_argument(
        "--instances",
        type=_count,
        default=d.instances,
        metavar="N|auto",
        help="detector.instances (default: auto)",
    )
    g.add_argument(
        "--threads", type=_count, default=d.threads, metavar="N|auto", help="detector.threads (default: auto)"
    )
    g.add_argument(
        "--nice",
        type=int,
        choices=range(20),
        default=d.nice,
        metavar="0-19",
        help="detector.nice: how much nicer the instances' threads run (default: %(default)s)",
    )
    g.add_argument("--cameras", type=int, default=d.cameras, help="synthetic cameras")
    g.add_argument("--batch", type=int, default=d.max_batch_size, metavar="N", help="max_batch_size")
    g.add_argument("--max-delay-ms", type=float, default=d.max_delay_ms)
    g.add_argument(
        "--fps", type=_fps, default=None, metavar="FPS|none", help="per-camera fps (default: unlimited)"
    )
    g.add_argument("--width", type=int, default=d.width)
    g.add_argument("--height", type=int, default=d.height)
    g.add_argument(
        "--prerender", type=int, default=d.prerender, metavar="N", help="frames in each camera's ring"
    )
    t = parser.add_argument_group("timing and noise control")
    t.add_argument(
        "--duration", type=float, default=d.duration, metavar="S", help="measured seconds per repeat"
    )
    t.add_argument(
        "--warmup", type=float, default=d.warmup, metavar="S", help="unmeasured seconds per repeat"
    )
    t.add_argument(
        "--repeats", type=int, default=d.repeats, help="repeats per configuration (medians, min-max)"
    )
    t.add_argument(
        "--baseline-seconds",
        type=float,
        default=d.baseline_seconds,
        metavar="S",
        help="per baseline per repeat",
    )
    s = parser.add_argument_group("sweep")
    s.add_argument("--sweep", action="store_true", help="batch x cameras, plus 1 camera at 10 fps")
    s.add_argument("--sweep-batches", type=_int_list, default=[1, 2, 4, 8], metavar="LIST")
    s.add_argument("--sweep-cameras", type=_int_list, default=[1, 2, 4, 8], metavar="LIST")
    s.add_argument(
        "--no-latency-config",
        action="store_true",
        help="in a sweep, skip the 1-camera-at-10-fps configuration",
    )
    s.add_argument(
        "--latency-duration",
        type=float,
        default=15.0,
        metavar="S",
        help="measured seconds per repeat of the 1-camera-at-10-fps configuration (default 15)",
    )
    o = parser.add_argument_group("output")
    o.add_argument("--json", type=Path, metavar="PATH", help="write the full results as JSON")
    o.add_argument("--csv", type=Path, metavar="PATH", help="write one row per configuration as CSV")
    o.add_argument("--plots", type=Path, metavar="DIR", help="write PNG plots here (needs matplotlib)")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    o.add_argument(
        "--compare", nargs=2, type=Path, metavar=("BASE.json", "NEW.json"), help="compare two runs and exit"
    )


def specs_from_args(args: argparse.Namespace) -> list[RunSpec]:
    base = RunSpec(
        cameras=args.cameras,
        max_batch_size=args.batch,
        max_delay_ms=args.max_delay_ms,
        instances=args.instances,
        threads=args.threads,
        nice=args.nice,
        backend=args.backend,
        model=args.model,
        fps=args.fps,
        width=args.width,
        height=args.height,
        prerender=args.prerender,
        duration=args.duration,
        warmup=args.warmup,
        repeats=args.repeats,
        baseline_seconds=args.baseline_seconds,
    )
    if args.sweep:
        from edgeinfer.bench.runner import sweep_specs

        return sweep_specs(
            base,
            args.sweep_batches,
            args.sweep_cameras,
            latency_config=not args.no_latency_config,
            latency_duration=args.latency_duration,
        )
    return [base]


def run(args: argparse.Namespace) -> int:
    from edgeinfer.bench import report

    if args.compare:
        base, new = (json.loads(p.read_text(encoding="utf-8")) for p in args.compare)
        sys.stdout.write(report.compare(base, new))
        return 0
    for name in ("cameras", "batch", "repeats", "prerender"):
        if getattr(args, name) < 1:
            print(f"edgeinfer bench: --{name} must be at least 1", file=sys.stderr)
            return 2
    if args.duration <= 0 or args.warmup < 0 or args.baseline_seconds <= 0:
        print("edgeinfer bench: --duration and --baseline-seconds must be positive", file=sys.stderr)
        return 2
    from edgeinfer.bench.runner import run_benchmark

    specs = specs_from_args(args)
    result = run_benchmark(
        specs, progress=not args.no_progress, log=lambda m: print(f"edgeinfer bench: {m}", file=sys.stderr)
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        report.write_csv(result["results"], args.csv)
    if args.plots and result["results"]:
        from edgeinfer.bench.plots import write_plots

        write_plots(result, args.plots)
    sys.stdout.write(report.markdown(result))
    if not result["results"]:
        return 1
    return 1 if result["errors"] else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="edgeinfer-bench",
        description="Benchmark the edgeinfer pipeline against the machine's own limit.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
