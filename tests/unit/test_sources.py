"""Tests of the frame readers, the source classification/factory, URL redaction and backoff.

Real parts throughout: video files are written with cv2.VideoWriter, image folders with cv2.imwrite,
synthetic frames come from the real MovingScene. Devices and network streams cannot exist here; for
them only the failure paths (nothing there) are exercised against real OpenCV.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeinfer.aio import Backoff
from edgeinfer.config import CameraConfig, SyntheticSourceConfig
from edgeinfer.errors import SourceError
from edgeinfer.sources import FrameReader, SourceKind, describe_source, open_reader, redact_url, source_kind
from edgeinfer.sources.images import ImageFolderReader
from edgeinfer.sources.opencv import OpenCVReader, has_gstreamer
from edgeinfer.sources.synthetic import SyntheticReader
from edgeinfer.synthetic import MovingScene

W, H = 64, 48
LEVELS = (20, 70, 120, 170, 220)  # one flat grey level per frame, distinguishable after compression


def write_video(path: Path, levels: tuple[int, ...] = LEVELS, fourcc: str = "mp4v") -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (W, H))
    assert writer.isOpened()
    for level in levels:
        writer.write(np.full((H, W, 3), level, np.uint8))
    writer.release()
    return path


def read_all(reader: FrameReader, limit: int = 100) -> list[np.ndarray]:
    images = []
    while len(images) < limit and (image := reader.read()) is not None:
        images.append(image)
    return images


# --------------------------------------------------------------------------- video files


@pytest.mark.parametrize(("name", "fourcc"), [("clip.mp4", "mp4v"), ("clip.avi", "MJPG")])
def test_video_file_reads_every_frame_then_ends(tmp_path: Path, name: str, fourcc: str) -> None:
    reader = OpenCVReader(str(write_video(tmp_path / name, fourcc=fourcc)))
    assert reader.live is False
    reader.open()
    images = read_all(reader)
    nearest = [int(np.argmin([abs(float(im.mean()) - v) for v in LEVELS])) for im in images]
    assert nearest == list(range(len(LEVELS)))
    assert all(im.shape == (H, W, 3) and im.dtype == np.uint8 for im in images)
    assert reader.read() is None  # stays at the end
    reader.open()  # reopening starts over (this is how a looping camera rewinds)
    assert abs(float(reader.read().mean()) - LEVELS[0]) < 10
    reader.close()
    reader.close()  # twice is harmless


def test_missing_video_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such video file"):
        OpenCVReader(str(tmp_path / "nope.mp4")).open()


def test_read_before_open_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="before open"):
        OpenCVReader(str(write_video(tmp_path / "c.mp4"))).read()


def test_absent_device_is_a_source_error() -> None:
    # no camera hardware here: a real V4L2 open of an index that does not exist
    with pytest.raises(SourceError, match="device 99"):
        OpenCVReader(99).open()


def test_unreachable_stream_error_is_redacted() -> None:
    # real FFmpeg open against a closed local port: fails fast, and the message must not carry the password
    reader = OpenCVReader("rtsp://admin:s3cret@127.0.0.1:9/stream")
    assert reader.live is True
    with pytest.raises(SourceError) as info:
        reader.open()
    assert "s3cret" not in str(info.value)
    assert "rtsp://admin:***@127.0.0.1:9/stream" in str(info.value)


@pytest.mark.skipif(has_gstreamer(), reason="this OpenCV has GStreamer; the error path cannot be reached")
def test_gstreamer_pipeline_without_gstreamer_says_so() -> None:
    with pytest.raises(SourceError, match="built without GStreamer"):
        OpenCVReader("videotestsrc ! videoconvert ! appsink").open()


# --------------------------------------------------------------------------- image folders


def test_image_folder_natural_order_and_formats(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for name, level in [("frame10.png", 200), ("frame2.jpg", 100), ("frame1.bmp", 50), ("FRAME3.PNG", 150)]:
        cv2.imwrite(str(tmp_path / name), np.full((H, W, 3), level, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "frame4.png").write_bytes(b"broken")  # unreadable: skipped with one warning
    (tmp_path / "sub.png").mkdir()  # a directory with an image suffix is not an image
    reader = ImageFolderReader(tmp_path)
    assert reader.live is False
    reader.open()
    levels = [round(float(im.mean())) for im in read_all(reader)]
    assert levels == pytest.approx([50, 100, 150, 200], abs=3)  # 1, 2, 3, 10 (not 1, 10, 2, 3)
    assert reader.read() is None
    assert "frame4.png" in caplog.text
    reader.open()
    assert len(read_all(reader)) == 4
    assert caplog.text.count("frame4.png") == 1  # warned once, not on every loop


def test_empty_or_missing_folder_is_a_source_error(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(SourceError, match=r"no .* files"):
        ImageFolderReader(tmp_path).open()
    with pytest.raises(SourceError, match="cannot list"):
        ImageFolderReader(tmp_path / "absent").open()


# --------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_and_matches_the_scene() -> None:
    config = SyntheticSourceConfig(type="synthetic", seed=5, width=320, height=240, objects=3)
    a, b = SyntheticReader(config), SyntheticReader(config)
    a.open()
    b.open()
    frames_a, frames_b = [a.read() for _ in range(4)], [b.read() for _ in range(4)]
    scene = MovingScene(5, width=320, height=240, n_objects=3)
    for index, (x, y) in enumerate(zip(frames_a, frames_b, strict=True)):
        assert x.shape == (240, 320, 3) and x.dtype == np.uint8
        np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(x, scene.render(index)[0])
    assert not np.array_equal(frames_a[0], frames_a[3])  # the shapes move
    other = SyntheticReader(config.model_copy(update={"seed": 6}))
    other.open()
    assert not np.array_equal(other.read(), frames_a[0])


def test_synthetic_prerender_plays_a_shared_read_only_ring_forward_and_back() -> None:
    config = SyntheticSourceConfig(type="synthetic", seed=2, width=320, height=240, prerender=3)
    reader = SyntheticReader(config)
    reader.open()
    images = [reader.read() for _ in range(9)]
    scene = MovingScene(2, width=320, height=240, n_objects=4)
    for index in range(3):
        np.testing.assert_array_equal(images[index], scene.render(index)[0])
    # 0 1 2 1 0 1 2 1 0: the shapes turn back at the ends instead of jumping back to frame 0
    assert [next(i for i in range(3) if image is images[i]) for image in images] == [
        0,
        1,
        2,
        1,
        0,
        1,
        2,
        1,
        0,
    ]
    assert not images[0].flags.writeable  # a consumer cannot corrupt the ring by drawing on it
    with pytest.raises(ValueError, match="read-only"):
        images[0][0, 0] = 0


# --------------------------------------------------------------------------- classification, factory


@pytest.fixture
def folder(tmp_path: Path) -> str:
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((H, W, 3), np.uint8))
    return str(tmp_path)


SYNTH = SyntheticSourceConfig(type="synthetic", width=320, height=240)
CASES = [
    (0, SourceKind.DEVICE, OpenCVReader, True),
    ("2", SourceKind.DEVICE, OpenCVReader, True),
    ("/dev/video0", SourceKind.DEVICE, OpenCVReader, True),
    ("rtsp://user:pw@10.0.0.5:554/stream1", SourceKind.STREAM, OpenCVReader, True),
    ("http://10.0.0.6/mjpg/video.mjpg", SourceKind.STREAM, OpenCVReader, True),
    ("v4l2src device=/dev/video0 ! videoconvert ! appsink", SourceKind.GSTREAMER, OpenCVReader, True),
    ("clips/parking.mp4", SourceKind.FILE, OpenCVReader, False),
    ("FOLDER", SourceKind.FOLDER, ImageFolderReader, False),
    (SYNTH, SourceKind.SYNTHETIC, SyntheticReader, False),
]


@pytest.mark.parametrize(("source", "kind", "reader_type", "live"), CASES)
def test_factory_dispatch(
    folder: str, source: object, kind: SourceKind, reader_type: type, live: bool
) -> None:
    source = folder if source == "FOLDER" else source
    camera = CameraConfig(name="cam", source=source)
    assert source_kind(camera.source) is kind
    reader = open_reader(camera)  # constructs only: nothing is opened, so absent devices are fine here
    assert type(reader) is reader_type
    assert reader.live is live
    assert isinstance(reader, FrameReader)
    assert "pw" not in reader.describe()


def test_source_kind_rejects_a_boolean() -> None:
    with pytest.raises(TypeError):
        source_kind(True)  # type: ignore[arg-type]


def test_factory_passes_the_requested_resolution() -> None:
    reader = open_reader(CameraConfig(name="cam", source=0, width=1280, height=720))
    assert isinstance(reader, OpenCVReader)
    assert (reader.width, reader.height) == (1280, 720)


# --------------------------------------------------------------------------- redaction


@pytest.mark.parametrize(
    ("raw", "redacted"),
    [
        ("rtsp://user:pass@host/stream", "rtsp://user:***@host/stream"),
        ("rtsp://admin:p@ss@10.0.0.5:554/h264", "rtsp://admin:***@10.0.0.5:554/h264"),
        ("http://u:pw@cam.local:8080/video?x=1", "http://u:***@cam.local:8080/video?x=1"),
        (
            "rtspsrc location=rtsp://a:b@h/s latency=0 ! decodebin ! appsink",
            "rtspsrc location=rtsp://a:***@h/s latency=0 ! decodebin ! appsink",
        ),
        ("https://cam/snap.jpg?user=bob&password=hunter2", "https://cam/snap.jpg?user=bob&password=***"),
        ("rtsp://cam/live?token=abc123&ch=1", "rtsp://cam/live?token=***&ch=1"),
        ("rtsp://host:554/stream", "rtsp://host:554/stream"),  # a port is not a password
        ("rtsp://user@host/stream", "rtsp://user@host/stream"),
        ("/videos/clip.mp4", "/videos/clip.mp4"),
    ],
)
def test_redact_url(raw: str, redacted: str) -> None:
    assert redact_url(raw) == redacted


def test_describe_source() -> None:
    assert describe_source(3) == "device 3"
    assert describe_source("rtsp://u:secret@h/s") == "rtsp://u:***@h/s"
    assert describe_source(SYNTH).startswith("synthetic(seed=1, 320x240")


# --------------------------------------------------------------------------- backoff


def test_backoff_doubles_up_to_the_cap_and_resets() -> None:
    backoff = Backoff(0.5, 3.0, jitter=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_backoff_full_jitter_stays_within_the_cap() -> None:
    backoff = Backoff(0.5, 30.0)  # real random jitter
    for _ in range(200):
        cap = backoff.cap()
        assert 0.0 <= backoff.next_delay() <= cap <= 30.0
    assert Backoff(0.5, 30.0, jitter=lambda: 0.0).next_delay() == 0.0


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(0, 1)
    with pytest.raises(ValueError):
        Backoff(2, 1)
