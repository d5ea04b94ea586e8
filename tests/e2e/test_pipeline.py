"""The daemon's pipeline end to end in-process: real bundled INT8 model, synthetic cameras, real store.

A few real runs only; batching, fairness, drops, memory and stop conditions are covered fast and
deterministically on a fake detector in tests/unit/test_pipeline*.py."""

import asyncio
import json
import resource
import sqlite3
import urllib.error
import urllib.request
from collections import Counter

import pytest

from edgeinfer.app.daemon import Daemon, open_store
from edgeinfer.config import Config, DetectorConfig, HTTPConfig
from edgeinfer.detect.build import open_detector
from edgeinfer.store.sqlite import STORE_FILE


def synthetic_config(tmp_path, cameras, **batching):
    return Config.model_validate(
        {
            "device": "test-box",
            "data_dir": str(tmp_path),
            "http": {"enabled": False},
            "batching": batching,
            "cameras": [
                {"name": f"cam{i}", "source": {"type": "synthetic", "seed": i, "prerender": 16}, **extra}
                for i, extra in enumerate(cameras)
            ],
        }
    )


@pytest.fixture(scope="module")
def detector():
    d = open_detector(DetectorConfig())
    yield d
    d.close()


def run(config, detector, **kw):
    daemon = Daemon(config, detector=detector, status_interval=60, **kw)
    summary = asyncio.run(daemon.run())
    return daemon, summary


def test_four_unlimited_cameras_batch_and_share_fairly(tmp_path, detector):
    config = synthetic_config(tmp_path, [{"events": "every_frame"}] * 4, max_batch_size=4, max_delay_ms=10)
    daemon, summary = run(config, detector, max_frames=80)
    p = daemon.pipeline
    assert 80 <= summary.frames <= 83  # whole batches: the one that reaches 80 is the last
    assert p.frames_total / p.batches > 1.0  # mean batch size
    counts = sorted(p.processed.values())
    assert counts[0] >= 0.2 * counts[-1], p.processed
    # Everything processed is in the store, consistent with the counters.
    store = open_store(config)
    try:
        points = store.count("points")
        events = [json.loads(e.body) for e in store.events()]
    finally:
        store.close()
    with sqlite3.connect(config.data_dir / STORE_FILE) as db:
        measurements = Counter(line.split(",", 1)[0] for (line,) in db.execute("SELECT line FROM points"))
    assert len(events) == summary.events
    # One inference point per processed frame, one detections point per label in each event; the rest is
    # tracking's (objects: counts, tracks: ended tracks).
    assert measurements["inference"] == summary.frames
    assert measurements["detections"] == sum(len({d["label"] for d in e["detections"]}) for e in events)
    assert set(measurements) == {"inference", "detections", "objects", "tracks"}
    assert points == sum(measurements.values())
    for cam in p.processed:
        seqs = [e["seq"] for e in events if e["camera"] == cam]
        assert seqs == sorted(seqs)


def test_max_frames_stops_the_run(tmp_path, detector):
    config = synthetic_config(tmp_path, [{}, {}], max_batch_size=2)
    _, summary = run(config, detector, max_frames=30)
    assert 30 <= summary.frames <= 31  # whole batches of 2: the one that reaches 30 is the last


@pytest.mark.slow
def test_overload_keeps_memory_flat_and_counts_drops(tmp_path):
    """8 live-paced cameras at 60 fps on a model too slow for them: frames drop at the source.

    480 frames/s of shapes-m (2 GFLOPs each) on one thread is out of any CPU core's reach; at 30 fps a
    fast host kept up with the 240 frames/s and dropped none."""
    slow = open_detector(DetectorConfig(model="shapes-m", threads=1))
    config = synthetic_config(tmp_path, [{"fps": 60}] * 8, max_batch_size=2, max_delay_ms=5)
    daemon = Daemon(config, detector=slow, status_interval=60, duration=12)
    samples = []

    async def main():
        async def sample():
            while True:
                await asyncio.sleep(1)
                samples.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux

        sampler = asyncio.create_task(sample())
        await daemon.run()
        sampler.cancel()

    asyncio.run(main())
    slow.close()
    dropped = sum(c["superseded"] + c["stale"] for c in daemon.pipeline.batcher.counters().values())
    assert dropped > 0
    # After warm-up (interpreters per batch size, first frames), peak RSS stops growing: 8 cameras x a few
    # 640x480 frames is ~7 MiB; allow 32 MiB of allocator noise over the last 8 seconds.
    assert samples[-1] - samples[3] < 32 * 1024, samples


def test_http_metrics_health_and_readiness(tmp_path, detector):
    config = synthetic_config(tmp_path, [{"fps": 20}], max_batch_size=2)
    config = config.model_copy(update={"http": HTTPConfig(listen="127.0.0.1:0")})
    daemon = Daemon(config, detector=detector, status_interval=60, duration=30)
    seen = {}

    async def main():
        async def probe():
            while daemon.http is None or daemon.pipeline.frames_total < 3:  # noqa: ASYNC110 (polls)
                await asyncio.sleep(0.05)
            port = daemon.http.port
            for path in ("/metrics", "/healthz", "/readyz", "/nope"):
                seen[path] = await asyncio.to_thread(fetch, f"http://127.0.0.1:{port}{path}")
            daemon.stop.set()

        prober = asyncio.create_task(probe())
        await daemon.run()
        await prober

    asyncio.run(main())
    status, body = seen["/metrics"]
    assert status == 200
    assert 'edgeinfer_frames_processed_total{camera="cam0"}' in body
    assert 'edgeinfer_stage_latency_seconds_bucket{le="0.001",stage="e2e"}' in body
    assert "edgeinfer_batch_size_count" in body
    assert seen["/healthz"][0] == 200 and seen["/readyz"][0] == 200
    assert "delivering: cam0" in seen["/readyz"][1]
    assert seen["/nope"][0] == 404


def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback, test)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
