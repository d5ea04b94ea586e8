#!/usr/bin/env python3
"""The CPU a frame costs in each part of the pipeline, measured on one thread with nothing contending.

The pipeline is CPU-bound on a small machine: the runtime's inference and the pipeline's own per-frame
work (letterbox, decode, tracking, the event JSON and line protocol, the store) share the same cores. So
the most the pipeline can reach against the bare runtime is ``infer / (infer + the rest)`` per frame,
whatever the threading. This script measures both sides on the same frames the benchmark's synthetic
cameras produce (4 cameras, ``events: every_frame``, tracking on, as ``edgeinfer bench``), each part
timed over the whole run and divided by the frames: medians of ``--repeats`` passes. Not counted (so the
ceiling is an upper bound): the event loop's routing and metrics, the capture threads, and the hand-offs
between threads.

Run: ``python benchmarks/frame_cost.py`` (about 20 s).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgeinfer.bench.spec import RunSpec
from edgeinfer.bench.worker import build_config
from edgeinfer.detect.build import open_detector
from edgeinfer.pipeline.outcomes import OutcomeBuilder
from edgeinfer.pipeline.types import StageTimes
from edgeinfer.sources.frame import Frame
from edgeinfer.sources.synthetic import SyntheticReader
from edgeinfer.store.sqlite import Store
from edgeinfer.tracking import decoder_conf

TIMES = StageTimes(queue=1.0, preprocess=1.0, inference=2.0, postprocess=1.0, e2e=5.0)


def _frames(config, count: int) -> list[Frame]:  # type: ignore[no-untyped-def]
    """Round-robin over the cameras, in capture order, as the batcher would take them."""
    readers = [SyntheticReader(c.source) for c in config.cameras]
    frames = []
    for seq in range(count // len(readers)):
        for camera, reader in zip(config.cameras, readers, strict=True):
            image = reader.read()
            assert image is not None
            wall_ns = 1_800_000_000_000_000_000 + seq * 100_000_000
            frames.append(Frame(camera.name, seq, image, wall_ns, seq * 0.1, seq))
    return frames


def one_pass(config, detector, frames: list[Frame], batch: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Seconds spent in each part over ``frames``, in batches of ``batch`` (one thread)."""
    builder = OutcomeBuilder(
        config.cameras,
        device=config.device,
        labels=detector.labels,
        model=detector.info.name,
        conf=config.detector.conf,
        track_prefix="1",
    )
    spent = dict.fromkeys(("prepare", "infer", "decode", "build", "store"), 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "edgeinfer.db")
        try:
            for start in range(0, len(frames), batch):
                jobs = frames[start : start + batch]
                t0 = time.perf_counter()
                prepared = detector.prepare([f.image for f in jobs])
                t1 = time.perf_counter()
                raw = detector.infer(prepared)
                t2 = time.perf_counter()
                decoded = [
                    builder.filter(f.camera, d)
                    for f, d in zip(jobs, detector.decode(raw, prepared), strict=True)
                ]
                t3 = time.perf_counter()
                outcomes = [builder.build(f, d, TIMES, len(jobs)) for f, d in zip(jobs, decoded, strict=True)]
                t4 = time.perf_counter()
                store.append(
                    [o.event for o in outcomes if o.event is not None],
                    [p for o in outcomes for p in o.points],
                    [m for o in outcomes for m in o.messages],
                )
                t5 = time.perf_counter()
                for key, seconds in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                    spent[key] += seconds
        finally:
            store.close()
    spent["tracking"] = sum(builder.tracking_ms) / 1e3  # part of build
    return spent


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--frames", type=int, default=800, help="frames per pass (all cameras)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="runtime threads")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    spec = RunSpec(cameras=4, max_batch_size=args.batch)
    config = build_config(spec, Path(tempfile.gettempdir()))
    cfg = config.detector.model_copy(update={"conf": decoder_conf(config), "threads": args.threads})
    detector = open_detector(cfg)
    frames = _frames(config, args.frames)
    one_pass(config, detector, frames[: 4 * args.batch], args.batch)  # warm-up: interpreters, caches
    passes = [one_pass(config, detector, frames, args.batch) for _ in range(args.repeats)]

    def per_frame(key: str) -> float:
        return statistics.median(p[key] for p in passes) / len(frames) * 1e3

    rows = [(key, per_frame(key)) for key in passes[0]]
    rest = sum(ms for key, ms in rows if key not in ("infer", "tracking"))
    infer = per_frame("infer")
    print(
        f"per frame, ms (batch {args.batch}, {args.threads} runtime thread(s), medians of {args.repeats} passes):"
    )
    for key, ms in rows:
        note = "  (part of build)" if key == "tracking" else ""
        print(f"  {key:9s} {ms:7.3f}{note}")
    print(f"  pipeline's own work {rest:.3f} ms against inference {infer:.3f} ms:")
    print(f"  CPU-bound ceiling of pipeline / bare runtime = {infer / (infer + rest):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
