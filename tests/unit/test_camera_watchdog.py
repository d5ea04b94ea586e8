"""A camera that freezes (no frame, no error) or goes away: the frame watchdog reconnects it, the other
cameras are unaffected, and /readyz and the metrics say which camera is not up and why.

``FreezingReader`` is a FAKE live camera (no RTSP server or V4L2 device can be made to hang here): its
``read()`` blocks on an event when told to, as a network camera that went away without closing the
connection does. Waits are event-driven with generous timeouts; no bound on speed is asserted.
"""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from test_pipeline import FakeDetector, FakeReader, config, run
from test_sources_capture import Sink, camera, eventually

from edgeinfer.errors import SourceError
from edgeinfer.pipeline.cameras import CameraCollector
from edgeinfer.pipeline.pipeline import STARTUP_GRACE_S, Pipeline
from edgeinfer.sources import Capture


class FakeCamera:
    """The far end: every reader opened on it shares this state (it survives reconnects)."""

    def __init__(self) -> None:
        self.frozen = threading.Event()  # set: every read blocks until ``release`` (then it unfreezes)
        self.release = threading.Event()
        self.refuse_opens = False
        self.opens = 0
        self.blocked_reads = 0

    def factory(self, _camera):
        self.opens += 1
        return FreezingReader(self, self.opens)


class FreezingReader:
    """FAKE live source: a frame every 2 ms, its pixels the reader's number; while the camera is frozen a
    read blocks (no frame, no error) until the camera is released, then returns a (late) frame."""

    live = True

    def __init__(self, cam: FakeCamera, number: int) -> None:
        self.cam, self.number = cam, number

    def describe(self) -> str:
        return "rtsp://admin:***@fake/stream"

    def open(self) -> None:
        if self.cam.refuse_opens:
            raise SourceError("rtsp://admin:hunter2@fake/stream: connection refused")

    def read(self):
        time.sleep(0.002)
        if self.cam.frozen.is_set():
            self.cam.blocked_reads += 1
            self.cam.release.wait(30)
        return np.full((8, 8, 3), self.number, np.uint8)

    def close(self) -> None:
        pass


@pytest.fixture
def fake_camera():
    cam = FakeCamera()
    yield cam
    cam.release.set()  # let any blocked thread go


def _watch(capture: Capture, predicate, timeout: float = 10.0) -> None:
    """Run the watchdog as the pipeline does (every few ms here) until ``predicate``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        capture.watchdog()
        time.sleep(0.005)


def test_a_frozen_source_is_abandoned_and_reconnected_and_its_late_frame_is_not_delivered(fake_camera):
    sink = Sink()
    capture = Capture(camera(0, name="dock"), sink, reader_factory=fake_camera.factory, stall_s=0.2,
                      backoff_initial_s=0.01)  # fmt: skip
    capture.start()
    try:
        sink.wait_for(5)
        assert capture.watchdog() is None  # delivering: nothing to do
        fake_camera.frozen.set()  # reads block: no frame, no error
        _watch(capture, lambda: capture.stalls == 1)
        assert capture.last_error.startswith("source frozen: no frame for")
        eventually(lambda: fake_camera.opens == 2)  # a new reader on a new thread
        assert capture.blocked and capture.threads() == 2  # the blocked one, and the new one
        delivered_before = len(sink.frames)
        fake_camera.frozen.clear()
        fake_camera.release.set()  # both blocked reads return, each with a late frame
        eventually(lambda: not capture.blocked)
        assert capture.threads() == 1  # the abandoned thread ended by itself
        frames = sink.wait_for(delivered_before + 5)
        assert all(int(f.image[0, 0, 0]) == 2 for f in frames[delivered_before:])  # none from reader 1
        seqs = [f.seq for f in frames]
        assert seqs == list(range(len(seqs)))  # no seq repeated or skipped
        assert capture.reconnects == 1
    finally:
        assert capture.stop(5.0)


def test_a_second_freeze_while_the_first_reader_is_still_blocked_does_not_pile_up_threads(fake_camera):
    capture = Capture(camera(0, name="dock"), Sink(), reader_factory=fake_camera.factory, stall_s=0.2,
                      backoff_initial_s=0.01)  # fmt: skip
    capture.start()
    try:
        eventually(lambda: capture.captured >= 3)
        fake_camera.frozen.set()  # the first reader blocks, and so does the one that replaces it
        _watch(capture, lambda: capture.stalls == 1)
        eventually(lambda: fake_camera.blocked_reads == 2)
        for _ in range(4):
            time.sleep(0.2)
            assert capture.watchdog() is None  # the first reader has not returned: no third thread
        assert capture.threads() == 2 and capture.stalls == 1 and capture.blocked
    finally:
        fake_camera.release.set()
        capture.stop(5.0)


def test_readyz_and_metrics_name_each_camera_with_its_state_and_the_others_go_on(tmp_path, fake_camera):
    """Three cameras: cam1 freezes (and its new reader too), cam2 refuses to connect (a password in its
    URL), cam0 is fine and goes on delivering all along."""
    cfg = config(tmp_path, [{"events": "every_frame"}] * 3, max_batch_size=3)
    gone = FakeCamera()
    gone.refuse_opens = True
    fine = FakeReader()
    factories = {"cam0": lambda _c: fine, "cam1": fake_camera.factory, "cam2": gone.factory}
    seen = {}
    fresh = 0.3  # "up": a frame in the last 0.3 s (5 s in the daemon)

    async def during(p: Pipeline):
        registry = CollectorRegistry()
        registry.register(CameraCollector(p.cameras, fresh_s=fresh))
        sample = lambda name, **labels: registry.get_sample_value(name, labels)  # noqa: E731
        seen["ready_start"] = p.ready(fresh)
        while p.processed["cam1"] < 5:  # noqa: ASYNC110 (polls the counters)
            await asyncio.sleep(0.01)
        fake_camera.frozen.set()
        while fake_camera.blocked_reads < 2:  # noqa: ASYNC110 (abandoned, and the new reader blocked too)
            await asyncio.sleep(0.01)
        frozen_at = dict(p.processed)
        await asyncio.sleep(2 * fresh)
        seen["ready_frozen"] = p.ready(fresh)
        seen["state_cam1"] = {s: sample("edgeinfer_camera_state", camera="cam1", state=s)
                              for s in ("up", "starting", "retrying", "down")}  # fmt: skip
        seen["state_cam2"] = sample("edgeinfer_camera_state", camera="cam2", state="retrying")
        seen["restarts"] = (sample("edgeinfer_camera_restarts_total", camera="cam1", reason="frozen"),
                            sample("edgeinfer_camera_restarts_total", camera="cam2", reason="error"))  # fmt: skip
        seen["cam0_during"] = p.processed["cam0"] - frozen_at["cam0"]
        fake_camera.frozen.clear()
        fake_camera.release.set()
        while p.processed["cam1"] < frozen_at["cam1"] + 5:  # noqa: ASYNC110 (polls the counters)
            await asyncio.sleep(0.01)
        seen["ready_back"] = p.ready(fresh)

    async def main():
        async def sink(batch):
            pass

        pipeline = Pipeline(cfg, FakeDetector(), None, sink, reader_factory=lambda c: factories[c.name](c),
                            poll_s=0.01, stall_s=0.2)  # fmt: skip
        stop = asyncio.Event()
        run_task = asyncio.create_task(pipeline.run(stop))
        try:
            await asyncio.wait_for(during(pipeline), 30)
        finally:
            stop.set()
            await asyncio.wait_for(run_task, 30)

    try:
        asyncio.run(main())
    finally:
        fake_camera.release.set()
    ok, text = seen["ready_frozen"]
    assert ok and text.startswith("model fake loaded; delivering: cam0; "), text  # cam0 is still ready
    assert (
        "down: cam1 (source frozen: no frame for" in text and "its previous reader is still blocked" in text
    )
    assert (
        "retrying: cam2 (rtsp://admin:***@fake/stream: connection refused;" in text and "hunter2" not in text
    )
    assert seen["cam0_during"] > 0  # unaffected by cam1
    assert seen["state_cam1"] == {"up": 0, "starting": 0, "retrying": 0, "down": 1}
    assert seen["state_cam2"] == 1
    assert seen["restarts"][0] == 1 and seen["restarts"][1] >= 1
    ok, text = seen["ready_back"]
    assert ok and text.startswith("model fake loaded; delivering: cam0, cam1; retrying: cam2 ("), text


def test_a_source_that_ended_is_down(tmp_path):
    cfg = config(tmp_path, [{"loop": False}, {}])
    readers = {"cam0": FakeReader(frames=3), "cam1": FakeReader()}
    ended = lambda p: "cam0" in p.cameras.captures and p.cameras.captures["cam0"].finished  # noqa: E731
    p, _outcomes, _ = run(cfg, FakeDetector(), readers, until=ended)
    assert "down: cam0 (the source ended (loop: false))" in p.ready()[1]


def test_healthz_before_the_first_batch_waits_for_a_grace_period(tmp_path):
    class Clock:
        now = 1000.0

        def __call__(self):
            return self.now

    clock = Clock()

    async def sink(batch):
        pass

    p = Pipeline(config(tmp_path, [{}]), FakeDetector(), None, sink, clock=clock)
    clock.now += 4.3
    assert p.healthy() == (
        True,
        "waiting for the first frame (4.3 s since start)",
    )  # was "last batch 4.3 s ago"
    clock.now += STARTUP_GRACE_S
    ok, why = p.healthy()
    assert not ok and why == f"no frame processed in the {STARTUP_GRACE_S + 4.3:.1f} s since start"
    assert p.ready() == (False, "model fake loaded; delivering: none")
