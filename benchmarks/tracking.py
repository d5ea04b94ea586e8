#!/usr/bin/env python3
"""Tracking cost per frame: one camera's tracker and lifecycle (what the finish stage adds per frame).

Ten objects per frame by default, moving and crossing, with detection noise, a few low-score frames and
misses, on a camera with two named zones and a line (so zones, crossings and counts are exercised too).
Runs ``CameraLifecycle.step`` frame after frame, as the outcome builder does, and prints the per-frame
percentiles. Run: ``python benchmarks/tracking.py [--objects 10] [--frames 20000]`` (about 10 s).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgeinfer.config import CameraConfig
from edgeinfer.detect.detections import Detections
from edgeinfer.sources.frame import Frame
from edgeinfer.tracking.lifecycle import CameraLifecycle

LABELS = ["circle", "square", "triangle"]


def scene(objects: int, frames: int, seed: int = 1) -> list[Detections]:
    """Boxes bouncing in a 640x480 frame, jittered; 5% of detections missed, 5% with a low score."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform([50, 50], [590, 430], (objects, 2))
    vel = rng.uniform(-8, 8, (objects, 2))
    size = rng.uniform(30, 90, objects)
    cls = rng.integers(0, len(LABELS), objects)
    out = []
    for _ in range(frames):
        pos += vel
        for axis, hi in ((0, 640.0), (1, 480.0)):
            bounce = (pos[:, axis] < 0) | (pos[:, axis] > hi)
            vel[bounce, axis] *= -1
            pos[:, axis] = np.clip(pos[:, axis], 0, hi)
        half = (size / 2)[:, None]
        xyxy = np.concatenate([pos - half, pos + half], axis=1) + rng.normal(0, 1.5, (objects, 4))
        score = np.where(rng.random(objects) < 0.05, 0.3, rng.uniform(0.7, 0.95, objects))
        keep = rng.random(objects) >= 0.05
        out.append(Detections(xyxy[keep].astype(np.float32), score[keep].astype(np.float32), cls[keep]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10)
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--json", action="store_true", help="one JSON line instead of the table")
    args = parser.parse_args()
    camera = CameraConfig.model_validate(
        {
            "name": "bench",
            "source": 0,
            "zones": {
                "left": [[0, 0], [320, 0], [320, 480], [0, 480]],
                "top": [[0, 0], [640, 0], [640, 200], [0, 200]],
            },
            "lines": {"middle": [[320, 0], [320, 480]]},
            "tracking": {"snapshots": False},
        }
    )
    lifecycle = CameraLifecycle(camera, device="bench", labels=LABELS, prefix="1")
    image = np.zeros((480, 640, 3), np.uint8)
    dets = scene(args.objects, args.frames)
    times = np.empty(len(dets))
    messages = 0
    for i, d in enumerate(dets):
        frame = Frame("bench", i, image, 1_800_000_000 * 10**9 + i * 10**8, i / 10.0, i)
        start = time.perf_counter()
        step = lifecycle.step(frame, d)
        times[i] = time.perf_counter() - start
        messages += len(step.messages)
    warm = times[len(times) // 10 :] * 1e3  # the first tenth: allocations, caches
    result = {
        "objects": args.objects,
        "frames": len(warm),
        "p50_ms": round(float(np.percentile(warm, 50)), 4),
        "p90_ms": round(float(np.percentile(warm, 90)), 4),
        "p99_ms": round(float(np.percentile(warm, 99)), 4),
        "mean_ms": round(float(warm.mean()), 4),
        "messages_per_frame": round(messages / len(dets), 2),
        "tracks_alive_at_end": len(lifecycle.tracker.tracks),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "python": platform.python_version(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
