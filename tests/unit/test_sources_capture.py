"""Tests of the per-camera Capture thread.

Files, folders and synthetic cameras are real. A live camera (RTSP server, V4L2 device) cannot exist
here, so live behaviour uses ``FlakyReader``, a fake that stands in for one. Waits are event-driven
(``Sink.wait_for``) with generous timeouts; timing bounds only ever check "not faster than".
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeinfer.config import CameraConfig, SyntheticSourceConfig
from edgeinfer.errors import SourceError
from edgeinfer.sources import Capture
from edgeinfer.sources.capture import LIVE_TOLERANCE
from edgeinfer.sources.frame import Frame

WAIT_S = 10.0  # generous: the machine is shared and noisy
SYNTH = SyntheticSourceConfig(type="synthetic", width=320, height=240, objects=2)


class Sink:
    """The ``deliver`` callback: collects frames, lets a test wait for a condition."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self._cond = threading.Condition()

    def __call__(self, frame: Frame) -> None:
        with self._cond:
            self.frames.append(frame)
            self._cond.notify_all()

    def wait_for(self, n: int, timeout: float = WAIT_S) -> list[Frame]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.frames) >= n, timeout), (
                f"{len(self.frames)} of {n} frames"
            )
            return list(self.frames)


def eventually(predicate: Callable[[], bool], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


@pytest.fixture
def captures() -> list[Capture]:
    """Captures made by a test; all stopped at teardown even when the test fails."""
    made: list[Capture] = []
    yield made
    for capture in made:
        capture.stop(5.0)


def camera(source: object, **kwargs: object) -> CameraConfig:
    return CameraConfig(name=kwargs.pop("name", "cam"), source=source, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the fake live camera


class FakeLiveCamera:
    """The state of one fake network camera, shared by every reader opened on it (it survives reconnects)."""

    def __init__(
        self, open_failures: int = 0, fail_reads: tuple[int, ...] = (), end_after: int | None = None
    ):
        self.open_failures = open_failures  # the next this many opens fail
        self.fail_reads = set(fail_reads)  # these read numbers (counted across reconnects) raise
        self.end_after = end_after  # the stream ends (read() -> None) after this many reads per session
        self.opens = 0
        self.reads = 0
        self.closes = 0

    def factory(self, _camera: CameraConfig) -> FlakyReader:
        return FlakyReader(self)


class FlakyReader:
    """FAKE live source (no RTSP server or V4L2 device here): fails as its FakeLiveCamera says."""

    live = True

    def __init__(self, cam: FakeLiveCamera) -> None:
        self.cam = cam
        self.session_reads = 0

    def describe(self) -> str:
        return "rtsp://admin:***@fake-camera/stream"

    def open(self) -> None:
        self.cam.opens += 1
        if self.cam.open_failures > 0:
            self.cam.open_failures -= 1
            raise SourceError("rtsp://admin:hunter2@fake-camera/stream: connection refused")

    def read(self) -> np.ndarray | None:
        time.sleep(0.002)  # a fast camera's frame interval
        if self.cam.end_after is not None and self.session_reads >= self.cam.end_after:
            return None
        number = self.cam.reads
        self.cam.reads += 1
        self.session_reads += 1
        if number in self.cam.fail_reads:
            raise SourceError("read timed out")
        return np.full((8, 8, 3), number % 256, np.uint8)

    def close(self) -> None:
        self.cam.closes += 1


def retry_delays(caplog: pytest.LogCaptureFixture) -> list[float]:
    return [r.args[-1] for r in caplog.records if "retrying in" in r.msg]  # type: ignore[index, misc]


# --------------------------------------------------------------------------- reconnect


def test_reconnects_after_failing_to_open_twice(
    captures: list[Capture], caplog: pytest.LogCaptureFixture
) -> None:
    fake, sink = FakeLiveCamera(open_failures=2), Sink()
    capture = Capture(
        camera("rtsp://admin:hunter2@fake-camera/stream"),
        sink,
        reader_factory=fake.factory,
        backoff_initial_s=0.01,
        backoff_max_s=1.0,
        jitter=lambda: 1.0,  # full jitter's upper bound: delays become deterministic
    )
    captures.append(capture)
    capture.start()
    frames = sink.wait_for(3)
    assert [f.seq for f in frames[:3]] == [0, 1, 2]
    assert (capture.errors, capture.reconnects, fake.opens) == (2, 1, 3)
    assert capture.state == "running"
    assert retry_delays(caplog) == [0.01, 0.02]  # backoff grows
    assert "hunter2" not in caplog.text  # the reason's URL is redacted before logging
    assert "rtsp://admin:***@fake-camera/stream" in caplog.text


def test_recovers_from_a_mid_stream_failure(
    captures: list[Capture], caplog: pytest.LogCaptureFixture
) -> None:
    fake, sink = FakeLiveCamera(fail_reads=(5,)), Sink()
    capture = Capture(
        camera(0), sink, reader_factory=fake.factory, backoff_initial_s=0.01, jitter=lambda: 1.0
    )
    captures.append(capture)
    capture.start()
    frames = sink.wait_for(10)
    assert (capture.errors, capture.reconnects) == (1, 1)
    assert fake.opens == 2 and fake.closes >= 1  # the broken reader was closed, a new one opened
    assert [f.seq for f in frames[:10]] == list(range(10))  # seq continues across the reconnect
    assert [int(f.image[0, 0, 0]) for f in frames[:6]] == [0, 1, 2, 3, 4, 6]  # read 5 failed
    assert capture.last_error == "read timed out"
    assert capture.captured >= 10 and capture.last_frame_mono >= frames[-1].mono


def test_repeated_failures_back_off_exponentially(
    captures: list[Capture], caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeLiveCamera(open_failures=1_000)
    capture = Capture(
        camera(0),
        Sink(),
        reader_factory=fake.factory,
        backoff_initial_s=0.005,
        backoff_max_s=0.04,
        jitter=lambda: 1.0,
    )
    captures.append(capture)
    capture.start()
    eventually(lambda: capture.errors >= 6)
    capture.stop()
    assert retry_delays(caplog)[:6] == [0.005, 0.01, 0.02, 0.04, 0.04, 0.04]  # doubles, then capped
    assert capture.reconnects == 0 and capture.captured == 0


def test_live_stream_end_means_reconnect(captures: list[Capture]) -> None:
    fake, sink = FakeLiveCamera(end_after=3), Sink()
    capture = Capture(camera(0), sink, reader_factory=fake.factory, backoff_initial_s=0.01)
    captures.append(capture)
    capture.start()
    sink.wait_for(7)
    assert capture.errors >= 2 and capture.reconnects >= 2 and fake.opens >= 3
    assert not capture.finished


def test_factory_exceptions_are_contained(captures: list[Capture], caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def broken_factory(cam: CameraConfig) -> FlakyReader:
        calls.append(cam)
        raise RuntimeError("bug in a reader")

    capture = Capture(camera(0), Sink(), reader_factory=broken_factory, backoff_initial_s=0.01)
    captures.append(capture)
    capture.start()
    eventually(lambda: len(calls) >= 3)  # retried, the thread did not die
    assert "unexpected RuntimeError: bug in a reader" in caplog.text


# --------------------------------------------------------------------------- isolation and stop


def test_stop_returns_promptly_while_in_backoff(captures: list[Capture]) -> None:
    fake = FakeLiveCamera(open_failures=1_000)
    capture = Capture(
        camera(0), Sink(), reader_factory=fake.factory, backoff_initial_s=30.0, jitter=lambda: 1.0
    )
    captures.append(capture)
    capture.start()
    eventually(lambda: capture.state == "backoff")
    started = time.monotonic()
    assert capture.stop(timeout=5.0) is True
    assert time.monotonic() - started < 5.0  # not the 30 s backoff
    assert capture.state == "stopped" and fake.opens == 1


def test_stop_returns_promptly_while_waiting_for_demand(captures: list[Capture]) -> None:
    sink = Sink()
    capture = Capture(camera(SYNTH), sink, demand_timeout_s=60.0)
    captures.append(capture)
    capture.start()
    sink.wait_for(1)
    started = time.monotonic()
    assert capture.stop(timeout=5.0) is True
    assert time.monotonic() - started < 5.0
    assert capture.state == "stopped"


def test_a_camera_failing_at_start_does_not_affect_another(tmp_path: Path, captures: list[Capture]) -> None:
    broken_sink, good_sink = Sink(), Sink()
    # both real: a video file that does not exist, and a synthetic scene
    broken = Capture(
        camera(str(tmp_path / "missing.mp4"), name="broken"), broken_sink, backoff_initial_s=0.01
    )
    good = Capture(camera(SYNTH, name="good", fps=50), good_sink)
    captures.extend([broken, good])
    broken.start()
    good.start()
    frames = good_sink.wait_for(5)
    eventually(lambda: broken.errors >= 2)  # and it keeps being retried
    assert {f.camera for f in frames} == {"good"} and good.errors == 0
    assert broken_sink.frames == [] and broken.state in {"backoff", "connecting"}
    assert "no such video file" in (broken.last_error or "")
    threads = {t.name for t in threading.enumerate()}
    assert {"edgeinfer[broken].capture", "edgeinfer[good].capture"} <= threads


def test_deliver_raising_does_not_stop_the_capture(
    captures: list[Capture], caplog: pytest.LogCaptureFixture
) -> None:
    sink = Sink()

    def deliver(frame: Frame) -> None:
        sink(frame)
        if frame.seq == 0:
            raise RuntimeError("consumer bug")

    capture = Capture(camera(SYNTH, fps=100), deliver)
    captures.append(capture)
    capture.start()
    sink.wait_for(3)
    assert capture.deliver_errors == 1 and "consumer bug" in caplog.text


def test_start_twice_is_an_error(captures: list[Capture]) -> None:
    capture = Capture(camera(SYNTH, fps=10), Sink())
    captures.append(capture)
    capture.start()
    with pytest.raises(RuntimeError, match="already started"):
        capture.start()


# --------------------------------------------------------------------------- end of stream: files, folders


def write_video(path: Path, levels: tuple[int, ...]) -> Path:
    path = path.with_suffix(".mp4")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    assert writer.isOpened()
    for level in levels:
        writer.write(np.full((48, 64, 3), level, np.uint8))
    writer.release()
    return path


def write_folder(path: Path, levels: tuple[int, ...]) -> Path:
    path.mkdir()
    for index, level in enumerate(levels):
        cv2.imwrite(str(path / f"{index:03d}.png"), np.full((48, 64, 3), level, np.uint8))
    return path


LEVELS = (30, 90, 150, 210)


def level_index(frame: Frame) -> int:
    """Which of LEVELS a (lossily compressed) flat frame shows."""
    return int(np.argmin([abs(float(frame.image.mean()) - level) for level in LEVELS]))


@pytest.mark.parametrize("write", [write_video, write_folder], ids=["video", "folder"])
def test_no_loop_ends_the_capture(tmp_path: Path, captures: list[Capture], write: Callable) -> None:
    source = write(tmp_path / "src", LEVELS)
    sink = Sink()
    capture = Capture(camera(str(source), loop=False), sink, demand_timeout_s=0.01)
    captures.append(capture)
    capture.start()
    eventually(lambda: capture.finished)
    assert capture.state == "stopped" and capture.errors == 0
    assert [level_index(f) for f in sink.frames] == [0, 1, 2, 3]
    assert [f.seq for f in sink.frames] == [0, 1, 2, 3]


@pytest.mark.parametrize("write", [write_video, write_folder], ids=["video", "folder"])
def test_loop_restarts_at_the_end(tmp_path: Path, captures: list[Capture], write: Callable) -> None:
    source = write(tmp_path / "src", LEVELS)
    sink = Sink()
    capture = Capture(camera(str(source), loop=True), sink, demand_timeout_s=0.01)
    captures.append(capture)
    capture.start()
    frames = sink.wait_for(10)
    assert [level_index(f) for f in frames[:10]] == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert capture.errors == 0 and capture.reconnects == 0 and not capture.finished


def test_empty_folder_backs_off_instead_of_spinning(tmp_path: Path, captures: list[Capture]) -> None:
    capture = Capture(camera(str(tmp_path)), Sink(), backoff_initial_s=0.05)
    captures.append(capture)
    capture.start()
    eventually(lambda: capture.errors >= 1)
    assert capture.state in {"backoff", "connecting"}
    assert "no " in (capture.last_error or "")


# --------------------------------------------------------------------------- pacing


def test_demand_driven_waits_for_frame_taken(captures: list[Capture]) -> None:
    sink = Sink()
    capture = Capture(camera(SYNTH), sink, demand_timeout_s=60.0)  # no fps: demand-driven
    captures.append(capture)
    capture.start()
    sink.wait_for(1)
    for taken in range(1, 4):
        time.sleep(0.3)  # plenty of time to render many frames, were it not waiting
        assert capture.captured == taken
        capture.frame_taken()
        sink.wait_for(taken + 1)


def test_demand_driven_redelivers_after_the_timeout(captures: list[Capture]) -> None:
    sink = Sink()
    capture = Capture(camera(SYNTH), sink, demand_timeout_s=0.02)
    captures.append(capture)
    capture.start()
    frames = sink.wait_for(4)  # nobody calls frame_taken, frames still come
    assert [f.seq for f in frames[:4]] == [0, 1, 2, 3]
    assert all(f.camera == "cam" and f.image.shape == (240, 320, 3) for f in frames)
    assert all(a.mono <= b.mono and a.wall_ns <= b.wall_ns for a, b in itertools.pairwise(frames))


def test_fps_paces_a_non_live_source(captures: list[Capture]) -> None:
    sink = Sink()
    capture = Capture(camera(SYNTH, fps=20.0), sink)  # nobody calls frame_taken: fps alone paces it
    captures.append(capture)
    capture.start()
    frames = sink.wait_for(8)
    span = frames[7].mono - frames[0].mono
    assert span >= 7 * 0.05 * 0.9  # never faster than 20 fps
    assert capture.skipped == 0


def test_fps_paces_a_live_source_by_skipping(captures: list[Capture]) -> None:
    sink = Sink()
    fake = FakeLiveCamera()  # reads every ~2 ms: far faster than the target
    capture = Capture(camera(0, fps=20.0), sink, reader_factory=fake.factory)
    captures.append(capture)
    capture.start()
    frames = sink.wait_for(8)
    span = frames[7].mono - frames[0].mono
    assert span >= 7 * 0.05 - LIVE_TOLERANCE * 0.05 - 0.01  # at most 20 fps (one early frame allowed)
    assert capture.skipped > 0  # read continuously, the rest counted as skipped


def test_set_fps_override_expires_back_to_the_configured_rate() -> None:
    now = [100.0]
    capture = Capture(camera(SYNTH, fps=2.0), Sink(), clock=lambda: now[0])  # not started: logic only
    assert capture.target_fps() == 2.0
    capture.set_fps(15.0, until_mono=110.0)
    assert capture.target_fps() == 15.0
    now[0] = 110.0
    assert capture.target_fps() == 2.0
    capture.set_fps(None)  # no expiry: unlimited until the next set_fps
    now[0] = 1e9
    assert capture.target_fps() is None
    capture.set_fps(2.0)
    assert capture.target_fps() == 2.0
    with pytest.raises(ValueError):
        capture.set_fps(0.0)


def test_set_fps_raises_the_rate_of_a_running_capture(captures: list[Capture]) -> None:
    sink = Sink()
    capture = Capture(camera(SYNTH, fps=0.2), sink)  # one frame every 5 s
    captures.append(capture)
    capture.start()
    sink.wait_for(1)
    capture.set_fps(50.0, until_mono=time.monotonic() + 60)  # cuts the 5 s wait short
    frames = sink.wait_for(6, timeout=4.0)  # at 0.2 fps this would take 25 s
    assert [f.seq for f in frames[:6]] == list(range(6))
