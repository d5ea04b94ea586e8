"""edgeinfer run [-c FILE] [--duration S] [--max-frames N] [--data-dir D] [--listen HOST:PORT]"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeinfer.commands._common import listen_address, warn_if_timing_only


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the daemon (no -c: bundled model on the bundled demo clip, local store only)",
        description="Run the daemon until SIGINT/SIGTERM (or --duration / --max-frames). Without -c: the "
        "bundled model on the bundled demo clip, events in the local store only.",
    )
    parser.add_argument("-c", "--config", help="YAML config file (default: the embedded default)")
    parser.add_argument(
        "--duration", type=float, metavar="SECONDS", help="stop after this long (default: run until stopped)"
    )
    parser.add_argument(
        "--max-frames", type=int, metavar="N", help="stop after N processed frames (default: no limit)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="where the local store lives (overrides data_dir; default: the config's, else "
        "$XDG_STATE_HOME/edgeinfer or ~/.local/state/edgeinfer)",
    )
    parser.add_argument(
        "--listen",
        type=listen_address,
        metavar="HOST:PORT",
        help="serve /metrics, /healthz, /readyz here (overrides http.listen and turns http on; "
        "default: the config's, 127.0.0.1:9108)",
    )
    parser.add_argument(
        "--status-interval",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="log the one-line status (fps, batch, latency, drops, events) this often",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from edgeinfer.app.reload import serve
    from edgeinfer.config import Config, HTTPConfig, load_config

    def load() -> Config:  # at start and on every SIGHUP: the command line's overrides hold for both
        config = load_config(args.config, data_dir=args.data_dir)
        if args.listen is not None:
            config = config.model_copy(update={"http": HTTPConfig(enabled=True, listen=args.listen)})
        return config

    config = load()
    warn_if_timing_only(config.detector.model)

    async def main() -> None:  # SIGHUP: load the file again, and run on it if it is valid
        await serve(
            config,
            load=load,
            duration=args.duration,
            max_frames=args.max_frames,
            status_interval=args.status_interval,
        )

    asyncio.run(main())
    return 0
