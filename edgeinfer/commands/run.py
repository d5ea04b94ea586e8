"""edgeinfer run [-c FILE] [--duration S] [--max-frames N] [--data-dir D]"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run", help="run the daemon (no -c: bundled model on the bundled demo clip, local store only)"
    )
    parser.add_argument("-c", "--config", help="YAML config file")
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long")
    parser.add_argument("--max-frames", type=int, metavar="N", help="stop after N processed frames")
    parser.add_argument("--data-dir", type=Path, help="where the local store lives (overrides data_dir)")
    parser.add_argument("--status-interval", type=float, default=5.0, metavar="SECONDS")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from edgeinfer.app.reload import serve
    from edgeinfer.config import load_config

    config = load_config(args.config, data_dir=args.data_dir)

    async def main() -> None:  # SIGHUP: load the file again, and run on it if it is valid
        await serve(
            config,
            load=lambda: load_config(args.config, data_dir=args.data_dir),
            duration=args.duration,
            max_frames=args.max_frames,
            status_interval=args.status_interval,
        )

    asyncio.run(main())
    return 0
