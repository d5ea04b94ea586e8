"""One shutdown path: start-up failures release what was acquired, the drain has a deadline and counts what
it could not finish, and a second signal skips the drain. Real bundled model, synthetic camera, real store."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import time

import pytest

from edgeinfer.app.daemon import DRAIN_TIMEOUT_S, Daemon
from edgeinfer.config import Config, DetectorConfig
from edgeinfer.detect.build import open_detector
from edgeinfer.errors import EdgeInferError, StoreError
from edgeinfer.store.sqlite import STORE_FILE, Store


@pytest.fixture(scope="module")
def detector():
    d = open_detector(DetectorConfig())
    yield d
    d.close()


def config_for(tmp_path, **http):
    return Config.model_validate(
        {
            "device": "test-box",
            "data_dir": str(tmp_path),
            "http": http or {"enabled": False},
            "cameras": [
                {"name": "cam0", "fps": 20, "source": {"type": "synthetic", "seed": 1, "prerender": 8}}
            ],
        }
    )


def test_a_failed_http_start_closes_the_store_and_removes_the_signal_handlers(tmp_path, detector):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        daemon = Daemon(config_for(tmp_path, listen=f"127.0.0.1:{port}"), detector=detector, duration=5)
        before = signal.getsignal(signal.SIGTERM)
        with pytest.raises(EdgeInferError, match=f"cannot listen on 127.0.0.1:{port}"):
            asyncio.run(daemon.run())
    assert signal.getsignal(signal.SIGTERM) == before
    with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
        daemon.store.store.count("events")
    Store(tmp_path / STORE_FILE).close()  # and the file opens again


def _failing_append(*args, **kwargs):
    raise StoreError("local store: database or disk is full")


def test_the_drain_deadline_counts_outcomes_that_could_not_be_stored(tmp_path, detector):
    daemon = Daemon(config_for(tmp_path), detector=detector, duration=1.5)
    daemon.store.store.append = _failing_append  # a full disk at the store seam
    start = time.monotonic()
    summary = asyncio.run(daemon.run())
    took = time.monotonic() - start
    assert summary.frames > 0
    assert summary.events == 0
    # every processed frame's outcome, plus the tracking's last one (the camera's tracks end), counted
    outcomes = summary.frames + 1
    assert summary.unfinished == outcomes
    registry = daemon.metrics.registry
    assert registry.get_sample_value("edgeinfer_drain_unfinished_total", {"what": "outcomes"}) == outcomes
    assert registry.get_sample_value("edgeinfer_outcomes_lost_total", {"reason": "shutdown"}) == outcomes
    assert took < 1.5 + DRAIN_TIMEOUT_S + 3.0  # the deadline bounds the drain


def test_a_second_signal_skips_the_drain(tmp_path, detector):
    daemon = Daemon(config_for(tmp_path), detector=detector)
    daemon.store.store.append = _failing_append  # the drain would wait its whole deadline
    stopped = {}

    async def main():
        async def signal_twice():
            await asyncio.sleep(1.0)
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(0.3)
            stopped["second"] = time.monotonic()
            os.kill(os.getpid(), signal.SIGTERM)

        sender = asyncio.create_task(signal_twice())
        summary = await daemon.run()
        await sender
        return summary

    summary = asyncio.run(main())
    after_second = time.monotonic() - stopped["second"]
    assert daemon.force_exit.is_set()
    assert summary.unfinished > 0
    assert after_second < DRAIN_TIMEOUT_S - 1.0  # did not sit out the drain deadline
