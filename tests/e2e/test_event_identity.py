"""Event identity across restarts: ``(device, camera, seq)`` never repeats when the daemon starts again on
the same store, and ``frame`` carries the frame's index in its source. Real bundled model, real store,
synthetic cameras (deterministic scenes)."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest

from edgeinfer.app.daemon import Daemon
from edgeinfer.config import Config, DetectorConfig
from edgeinfer.detect.build import open_detector
from edgeinfer.store.sqlite import STORE_FILE, Store


@pytest.fixture(scope="module")
def detector():
    d = open_detector(DetectorConfig())
    yield d
    d.close()


def _config(tmp_path):
    return Config.model_validate(
        {
            "device": "test-box",
            "data_dir": str(tmp_path),
            "http": {"enabled": False},
            "cameras": [
                {"name": name, "events": "every_frame", "source": {"type": "synthetic", "seed": seed}}
                for name, seed in (("a", 1), ("b", 2))
            ],
        }
    )


def _events(tmp_path):
    store = Store(tmp_path / STORE_FILE)
    try:
        return [json.loads(e.body) for e in store.events()]
    finally:
        store.close()


async def _run_until_each_camera_has(daemon: Daemon, frames: int):
    """Stop once every camera had ``frames`` processed (a fixed max_frames could all go to the camera
    whose source opened first: demand-driven sources deliver as fast as they are taken)."""

    async def watch() -> None:
        while min(daemon.pipeline.processed.values()) < frames:  # noqa: ASYNC110 (polls a counter)
            await asyncio.sleep(0.02)
        daemon.stop.set()

    watcher = asyncio.create_task(watch())
    try:
        return await daemon.run()
    finally:
        watcher.cancel()


def test_seq_continues_across_restarts_and_frame_is_the_source_index(tmp_path, detector):
    runs = []
    for _ in range(3):
        before = len(_events(tmp_path))
        daemon = Daemon(_config(tmp_path), detector=detector)
        summary = asyncio.run(_run_until_each_camera_has(daemon, 6))
        assert summary.events > 0
        runs.append(_events(tmp_path)[before:])
    for camera in ("a", "b"):
        per_run = [[e["seq"] for e in run if e["camera"] == camera] for run in runs]
        assert all(per_run), per_run
        for earlier, later in itertools.pairwise(per_run):
            assert min(later) > max(earlier), per_run  # monotonic across restarts
        every = [seq for run in per_run for seq in run]
        assert len(every) == len(set(every))  # (device, camera, seq) unique over all three runs
        # frame: the index in the (synthetic, deterministic) source, from 0 again in every run
        frames = [[e["frame"] for e in run if e["camera"] == camera] for run in runs]
        assert all(f[0] == 0 and f == sorted(f) for f in frames), frames
