"""Decoders for each YOLO layout, with hand-built tensors (float and quantized)."""

import numpy as np
import pytest

from edgeinfer.detect.nms import nms
from edgeinfer.detect.preprocess import Letterbox
from edgeinfer.detect.yolo import OutputQuant, YoloDecoder, anchor_count, recognise_layout
from edgeinfer.errors import ModelError

IN = 320
N = anchor_count(IN, IN)  # 2100
IDENTITY = Letterbox(1.0, 0, 0, IN, IN, IN, IN)
FLOAT = OutputQuant(np.dtype(np.float32), 0.0, 0)


def v8_output(objects, nc=3, normalized=True):
    """(4+nc, N) with the given objects [(cx, cy, w, h, class, score)] in pixels at some anchor columns."""
    out = np.zeros((4 + nc, N), np.float32)
    for i, (cx, cy, w, h, cls, score) in enumerate(objects):
        col = 100 + 37 * i
        box = np.array([cx, cy, w, h], np.float32)
        out[:4, col] = box / IN if normalized else box
        out[4 + cls, col] = score
    return out


def decoder(layout, quant=FLOAT, normalized=True, conf=0.25):
    return YoloDecoder(
        layout, quant, input_hw=(IN, IN), normalized=normalized, conf=conf, iou=0.45, max_det=100
    )


@pytest.mark.parametrize(
    ("shape", "names", "expected"),
    [
        ((1, 7, N), None, ("yolov8", 3)),
        ((1, 84, N), 80, ("yolov8", 80)),
        ((1, N, 7), None, ("yolov8t", 3)),
        ((1, 3 * N, 85), None, ("yolov5", 80)),
        ((1, 3 * N, 6), None, ("yolov5", 1)),
        ((1, 300, 6), 80, ("end2end", 80)),
        ((1, 300, 6), None, ("end2end", 0)),
    ],
)
def test_recognise_layout(shape, names, expected):
    assert recognise_layout(shape, IN, IN, names) == expected


def test_unknown_layout_names_the_expected_shapes():
    with pytest.raises(ModelError, match=r"yolov8 \[1, 4\+nc, 2100\]"):
        recognise_layout((1, 10, 17), IN, IN)


@pytest.mark.parametrize("normalized", [True, False])
def test_yolov8_float_decodes_boxes_and_classes(normalized):
    out = v8_output(
        [(100, 80, 40, 20, 1, 0.9), (250, 250, 60, 60, 2, 0.6), (10, 10, 5, 5, 0, 0.1)], normalized=normalized
    )
    dets = decoder("yolov8", normalized=normalized).decode(out, IDENTITY)
    assert len(dets) == 2  # the 0.1 one is under conf
    assert dets.class_id.tolist() == [1, 2]
    np.testing.assert_allclose(dets.xyxy[0], [80, 70, 120, 90], atol=1e-3)
    np.testing.assert_allclose(dets.xyxy[1], [220, 220, 280, 280], atol=1e-3)
    np.testing.assert_allclose(dets.confidence, [0.9, 0.6], atol=1e-6)


def test_yolov8_transposed_matches_channel_major():
    out = v8_output([(100, 80, 40, 20, 1, 0.9), (250, 250, 60, 60, 2, 0.6)])
    a = decoder("yolov8").decode(out, IDENTITY)
    b = decoder("yolov8t").decode(np.ascontiguousarray(out.T), IDENTITY)
    np.testing.assert_allclose(a.xyxy, b.xyxy)
    assert a.class_id.tolist() == b.class_id.tolist()


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_yolov8_quantized_matches_float_within_one_step(dtype):
    scale = 1 / 255
    zero = -128 if dtype == np.int8 else 0
    out = v8_output([(100, 80, 40, 20, 1, 0.9), (250, 250, 60, 60, 2, 0.6), (30, 30, 10, 10, 0, 0.24)])
    q = np.clip(np.round(out / scale + zero), np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)
    dets = decoder("yolov8", quant=OutputQuant(np.dtype(dtype), scale, zero)).decode(q, IDENTITY)
    ref = decoder("yolov8").decode(out, IDENTITY)
    assert dets.class_id.tolist() == ref.class_id.tolist() == [1, 2]
    np.testing.assert_allclose(dets.xyxy, ref.xyxy, atol=IN * scale)
    np.testing.assert_allclose(dets.confidence, ref.confidence, atol=scale)


def test_quantized_threshold_keeps_exactly_the_scores_at_or_above_conf():
    scale, zero = 0.01, 0
    out = np.zeros((7, N), np.int8)
    out[:2, :3] = [[10, 40, 70], [10, 40, 70]]  # three separate boxes (0.1, 0.4, 0.7 normalised centres)
    out[2:4, :3] = 10
    out[4, 0], out[4, 1], out[4, 2] = 24, 25, 26  # 0.24, 0.25, 0.26
    dets = decoder("yolov8", quant=OutputQuant(np.dtype(np.int8), scale, zero)).decode(out, IDENTITY)
    np.testing.assert_allclose(sorted(dets.confidence.tolist()), [0.25, 0.26], atol=1e-6)


def test_yolov5_multiplies_objectness_and_class_score():
    out = np.zeros((3 * N, 8), np.float32)
    out[5] = [100 / IN, 100 / IN, 20 / IN, 20 / IN, 0.9, 0.1, 0.8, 0.1]  # 0.72 class 1
    out[9] = [200 / IN, 200 / IN, 20 / IN, 20 / IN, 0.3, 0.9, 0.0, 0.0]  # 0.27 class 0
    out[12] = [50 / IN, 50 / IN, 20 / IN, 20 / IN, 0.2, 1.0, 0.0, 0.0]  # 0.2: dropped
    dets = decoder("yolov5").decode(out, IDENTITY)
    assert dets.class_id.tolist() == [1, 0]
    np.testing.assert_allclose(dets.confidence, [0.72, 0.27], atol=1e-6)
    np.testing.assert_allclose(dets.xyxy[0], [90, 90, 110, 110], atol=1e-3)


def test_end2end_takes_boxes_as_given_without_nms():
    out = np.zeros((300, 6), np.float32)
    out[0] = [10, 10, 50, 50, 0.9, 2]
    out[1] = [12, 12, 52, 52, 0.8, 2]  # overlapping, same class: end2end output is already final
    dets = decoder("end2end", normalized=False).decode(out, IDENTITY)
    assert len(dets) == 2
    assert dets.class_id.tolist() == [2, 2]
    np.testing.assert_allclose(dets.xyxy[0], [10, 10, 50, 50])


def test_boxes_map_back_through_the_letterbox():
    box = Letterbox.fit(480, 640, IN, IN)  # 640x480 -> 320x240 + 40 px bars top and bottom
    assert (box.scale, box.pad_left, box.pad_top) == (0.5, 0, 40)
    out = v8_output([(160, 160, 100, 50, 0, 0.8)])
    dets = decoder("yolov8").decode(out, box)
    np.testing.assert_allclose(dets.xyxy[0], [220, 190, 420, 290], atol=1e-3)


def test_nms_is_class_aware_and_capped():
    xyxy = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    score = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    cls = np.array([0, 0, 1, 0])
    assert nms(xyxy, score, cls, 0.5, 10).tolist() == [0, 2, 3]  # box 1 overlaps box 0 (same class)
    assert nms(xyxy, score, cls, 0.5, 2).tolist() == [0, 2]
    assert nms(xyxy[:0], score[:0], cls[:0], 0.5, 10).tolist() == []
