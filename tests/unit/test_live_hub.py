"""The live hub: encodes only while somebody watches, once per frame for every viewer, at most
``fps`` times a second; a slow viewer holds one frame. And the annotated JPEG it encodes (real OpenCV)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import cv2
import numpy as np

from edgeinfer.app.livehub import LiveHub
from edgeinfer.app.liveview import Overlay, render_jpeg
from edgeinfer.config import CameraConfig
from edgeinfer.detect.detections import Detections
from edgeinfer.sources.frame import Frame

LABELS = ["circle", "square", "triangle"]


def _frame(camera: str, seq: int, width: int = 320, height: int = 240) -> Frame:
    image = np.full((height, width, 3), (seq * 7) % 255, np.uint8)
    return Frame(camera, seq, image, time.time_ns(), time.monotonic())


def _dets() -> Detections:
    return Detections(
        np.array([[20, 30, 120, 140]], np.float32), np.array([0.9], np.float32), np.array([1], np.int64)
    )


class CountingRender:
    """The real renderer, counted: how many JPEGs were really encoded, and for which frames."""

    def __init__(self) -> None:
        self.seqs: list[int] = []

    def __call__(self, frame: Frame, dets: Detections, overlay: Overlay) -> bytes:
        self.seqs.append(frame.seq)
        return render_jpeg(frame.image, dets, LABELS, overlay, width=640)


def _hub(render: CountingRender, fps: float = 5.0) -> LiveHub:
    cameras = [CameraConfig(name="dock", source=0), CameraConfig(name="yard", source=1)]
    return LiveHub(cameras, LABELS, fps=fps, render=render)


def test_nothing_is_encoded_while_nobody_watches() -> None:
    async def main() -> None:
        render = CountingRender()
        hub = _hub(render)
        for seq in range(50):
            hub.publish(_frame("dock", seq), _dets())
            await asyncio.sleep(0.002)
        assert render.seqs == []
        with hub.watch("dock") as viewer:
            jpeg = await asyncio.wait_for(viewer.next(), 5)
        assert render.seqs == [49]  # the newest frame, on the first viewer's arrival
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (240, 320, 3)
        await asyncio.sleep(0.3)  # the producer has stopped: nothing more is encoded
        for seq in range(50, 80):
            hub.publish(_frame("dock", seq), _dets())
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.3)
        assert render.seqs == [49]
        assert hub.viewers("dock") == 0
        await hub.close()

    asyncio.run(main())


def test_every_viewer_gets_the_same_encode_at_most_fps_times_a_second() -> None:
    async def main() -> None:
        render = CountingRender()
        hub = _hub(render, fps=5.0)
        got: dict[str, list[bytes]] = {"a": [], "b": []}

        async def view(name: str, seconds: float) -> None:
            with hub.watch("dock") as viewer:
                end = time.monotonic() + seconds
                while (left := end - time.monotonic()) > 0:
                    try:
                        got[name].append(await asyncio.wait_for(viewer.next(), left))
                    except TimeoutError:
                        break

        async def publish(seconds: float) -> int:
            seq, end = 0, time.monotonic() + seconds
            while time.monotonic() < end:
                hub.publish(_frame("dock", seq), _dets())
                hub.publish(_frame("yard", seq), _dets())  # nobody watches yard: never encoded
                seq += 1
                await asyncio.sleep(0.01)
            return seq

        a, b = asyncio.create_task(view("a", 2.0)), asyncio.create_task(view("b", 2.0))
        published = await publish(2.0)
        await asyncio.gather(a, b)
        await hub.close()
        assert published > 50, published
        # 2 s at 5 fps: at most 11 encodes (the first at once), all of them dock frames, each once
        assert 3 <= len(render.seqs) <= 11, render.seqs
        assert len(set(render.seqs)) == len(render.seqs)
        assert hub.encodes == len(render.seqs)
        # both viewers got each of those JPEGs, the very same bytes objects (encoded once for both)
        assert [id(j) for j in got["a"]] == [id(j) for j in got["b"]]
        assert len(got["a"]) == len(render.seqs)

    asyncio.run(main())


def test_latest_jpeg_encodes_a_frame_once_however_often_it_is_asked_for() -> None:
    async def main() -> None:
        render = CountingRender()
        hub = _hub(render)
        assert await hub.latest_jpeg("dock") is None  # no frame yet
        hub.publish(_frame("dock", 1), _dets())
        first = await asyncio.gather(*(hub.latest_jpeg("dock") for _ in range(5)))
        assert render.seqs == [1] and all(j is first[0] for j in first)
        hub.publish(_frame("dock", 2), _dets())
        assert await hub.latest_jpeg("dock") is not first[0]
        assert render.seqs == [1, 2]
        await hub.close()

    asyncio.run(main())


def test_a_viewer_that_does_not_read_holds_one_frame_and_counts_the_rest_as_dropped() -> None:
    async def main() -> None:
        render = CountingRender()
        hub = _hub(render, fps=30.0)
        with hub.watch("dock") as slow, hub.watch("dock") as fast:
            taken = 0

            async def read_all() -> None:  # a viewer that keeps up: takes each JPEG as it comes
                nonlocal taken
                while True:
                    await fast.next()
                    taken += 1

            reader = asyncio.create_task(read_all())
            for seq in range(40):
                hub.publish(_frame("dock", seq), _dets())
                await asyncio.sleep(0.04)
            reader.cancel()
            assert slow.offered == fast.offered >= 10
            assert slow.dropped == slow.offered - 1  # one JPEG held, every older one let go
            assert fast.dropped == 0 and taken == fast.offered
            assert await slow.next() is not None
        await hub.close()

    asyncio.run(main())


# ---------------------------------------------------------------------------- the annotated JPEG


@dataclass(frozen=True, slots=True, eq=False)
class TrackedDetections(Detections):
    """What the tracking work adds: a track id per detection (-1: not tracked)."""

    track_id: np.ndarray


def _decode(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_the_frame_is_scaled_to_the_live_width_and_never_drawn_on() -> None:
    image = np.zeros((960, 1280, 3), np.uint8)
    before = image.copy()
    jpeg = render_jpeg(image, _dets(), LABELS, width=640)
    assert _decode(jpeg).shape == (480, 640, 3)
    assert np.array_equal(image, before)  # the pipeline's frame is shared: untouched
    assert _decode(render_jpeg(np.zeros((240, 320, 3), np.uint8), _dets(), LABELS, width=640)).shape == (
        240,
        320,
        3,
    )  # never scaled up


def test_boxes_zones_and_lines_are_drawn_where_they_are() -> None:
    image = np.zeros((480, 640, 3), np.uint8)
    plain = _decode(render_jpeg(image, Detections.empty(), LABELS, width=320))
    assert plain.max() < 30  # nothing drawn: black
    overlay = Overlay(
        zones=(("dock", np.array([[0, 400], [640, 400], [640, 479], [0, 479]], float)),),
        lines=(("door", np.array([[600, 0], [600, 300]], float)),),
    )
    drawn = _decode(render_jpeg(image, _dets(), LABELS, overlay, width=320))
    # at half scale: the box edge at x = 10..60, y = 15..70; the zone's top edge at y = 200; the line at x = 300
    assert drawn[40, 9:12].max() > 100  # the box's left edge
    assert drawn[199:202, 100:200].max() > 100  # the zone's top edge
    assert drawn[100:140, 299:302].max() > 100  # the line
    assert drawn[120:180, 100:250].max() < 30  # and nothing in between


def test_track_ids_are_drawn_when_the_detections_carry_them() -> None:
    image = np.zeros((480, 640, 3), np.uint8)
    base = _dets()
    tracked = TrackedDetections(base.xyxy, base.confidence, base.class_id, np.array([17]))
    untracked = TrackedDetections(base.xyxy, base.confidence, base.class_id, np.array([-1]))
    without = _decode(render_jpeg(image, base, LABELS, width=640))
    with_id = _decode(render_jpeg(image, tracked, LABELS, width=640))
    assert np.array_equal(without, _decode(render_jpeg(image, untracked, LABELS, width=640)))
    label_row = slice(0, 30)  # the label sits on a box just above y = 30
    assert np.abs(with_id[label_row].astype(int) - without[label_row].astype(int)).sum() > 0
    assert np.array_equal(with_id[40:], without[40:])  # only the label differs (longer: "#17 square 0.90")


def test_overlay_of_a_camera_reads_list_zones_and_named_maps() -> None:
    camera = CameraConfig(name="dock", source=0, zones=[[(0, 0), (10, 0), (10, 10)]])
    overlay = Overlay.of(camera)
    assert [name for name, _ in overlay.zones] == ["zone0"] and overlay.zones[0][1].shape == (
        3,
        2,
    )  # as tracking names it
    assert overlay.lines == ()

    @dataclass
    class Named:  # the named forms the zones/lines work brings
        zones: dict[str, list[tuple[int, int]]]
        lines: dict[str, list[tuple[int, int]]]

    named = Overlay.of(Named({"ramp": [(0, 0), (5, 0), (5, 5)]}, {"door": [(1, 2), (3, 4)]}))
    assert [n for n, _ in named.zones] == ["ramp"] and [n for n, _ in named.lines] == ["door"]
