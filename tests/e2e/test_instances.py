"""Detector instances for real: the bundled INT8 model in two LiteRT interpreters behind one pipeline,
and the tuning that chooses them measured on this machine, then read back from its cache."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from edgeinfer.app.daemon import Daemon, open_store
from edgeinfer.config import Config, DetectorConfig
from edgeinfer.detect.build import open_detector
from edgeinfer.detect.pool import open_pool
from edgeinfer.detect.tuning import CACHE_ENV
from edgeinfer.synthetic import random_scene


def _config(tmp_path: Path, **detector: object) -> Config:
    return Config.model_validate(
        {
            "device": "pool-box",
            "data_dir": str(tmp_path),
            "http": {"enabled": False},
            "detector": detector,
            "batching": {"max_batch_size": 2},
            "cameras": [
                {"name": f"cam{i}", "source": {"type": "synthetic", "seed": i + 1, "prerender": 8}, "events": "every_frame"}
                for i in range(4)
            ],
        }
    )  # fmt: skip


def test_two_litert_instances_share_the_work_and_keep_each_cameras_order(tmp_path: Path) -> None:
    config = _config(tmp_path, instances=2, threads=1)
    pool = open_pool(config.detector, max_batch=2, data_dir=tmp_path)
    try:
        assert (len(pool.instances), pool.choice.how) == (2, "configured")
        assert pool.instances[0].backend is not pool.instances[1].backend
        assert pool.instances[0].preprocessor is pool.instances[1].preprocessor  # one prepares for both
        daemon = Daemon(config, detector=pool, status_interval=60, max_frames=120)
        summary = asyncio.run(daemon.run())
    finally:
        pool.close()
    assert daemon.pipeline.stages.nice == config.detector.nice == 10  # single-threaded: niced
    per_instance = daemon.pipeline.stages.jobs_per_instance
    assert len(per_instance) == 2 and min(per_instance) >= 0.2 * max(per_instance), per_instance
    store = open_store(config)
    try:
        events = [json.loads(e.body) for e in store.events()]
    finally:
        store.close()
    assert len(events) == summary.events >= 120
    for cam in {e["camera"] for e in events}:
        seqs = [e["seq"] for e in events if e["camera"] == cam]
        assert seqs == sorted(seqs), cam  # stored in frame order though batches finished out of order


def test_every_instance_detects_what_a_single_detector_does(tmp_path: Path) -> None:
    pool = open_pool(DetectorConfig(instances=2, threads=1), max_batch=2, data_dir=tmp_path)
    single = open_detector(DetectorConfig(threads=1))
    try:
        rng = np.random.default_rng(7)
        images = [random_scene(rng)[0] for _ in range(2)]
        want = single.detect(images)
        for instance in pool.instances:
            prepared = pool.prepare(images)  # the shared preprocessing, run on any instance
            got = instance.decode(instance.infer(prepared), prepared)
            for g, w in zip(got, want, strict=True):
                assert len(w.class_id) > 0
                np.testing.assert_array_equal(g.class_id, w.class_id)
                np.testing.assert_allclose(g.xyxy, w.xyxy, atol=1e-3)
    finally:
        pool.close()
        single.close()


def test_auto_is_measured_once_then_read_from_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CACHE_ENV)  # this test is about the data dir's own cache
    first = open_pool(DetectorConfig(), max_batch=2, data_dir=tmp_path)
    try:
        choice = first.choice
        assert choice.how == "measured"
        assert len(first.instances) == choice.instances
        measured = {(m.candidate.instances, m.candidate.threads, m.candidate.batch) for m in choice.measured}
        assert (choice.instances, choice.threads, choice.batch) in measured
        assert all(m.fps > 0 and m.p50_ms > 0 for m in choice.measured)
    finally:
        first.close()
    cached = json.loads((tmp_path / "tuning.json").read_text(encoding="utf-8"))
    assert len(cached) == 1
    second = open_pool(DetectorConfig(), max_batch=2, data_dir=tmp_path)
    try:
        assert second.choice.how == "cached"
        assert (second.choice.instances, second.choice.threads, second.choice.batch) == (
            choice.instances,
            choice.threads,
            choice.batch,
        )
    finally:
        second.close()


def test_instances_with_a_thread_pool_of_their_own_are_not_niced(tmp_path: Path) -> None:
    """The runtime's pool threads stay at the daemon's priority, so the instance's own thread does too
    (a niced caller held its invokes up)."""
    config = _config(tmp_path, instances=1, threads=2)
    pool = open_pool(config.detector, max_batch=2, data_dir=tmp_path)
    try:
        daemon = Daemon(config, detector=pool, status_interval=60, max_frames=8)
        asyncio.run(daemon.run())
    finally:
        pool.close()
    assert daemon.pipeline.stages.nice == 0 and daemon.pipeline.frames_total >= 8
