"""The hot path is bit-identical to the code it replaced (c0bd3dc): NMS fed lists instead of arrays,
Letterbox.to_original as in-place ufuncs over the block, Detector.prepare reusing its tensors.

The "before" functions are copies of that code; each test runs both and compares the bytes (signed zeros and
NaN payloads included), on hand-made edge cases and on the bundled models and test images.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeinfer.config import DetectorConfig
from edgeinfer.detect import yolo
from edgeinfer.detect.assets import bundled_dir
from edgeinfer.detect.assets import test_images_dir as bundled_test_images
from edgeinfer.detect.build import open_detector
from edgeinfer.detect.detector import Detector
from edgeinfer.detect.nms import MAX_CANDIDATES, nms
from edgeinfer.detect.preprocess import InputWriter, Letterbox, Prepared, Preprocessor


def nms_arrays(xyxy, score, class_id, iou, max_det):
    """nms as it was: OpenCV fed numpy arrays."""
    if len(score) == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-score)[:MAX_CANDIDATES]
    xywh = xyxy[order].copy()
    xywh[:, 2:] -= xywh[:, :2]
    kept = cv2.dnn.NMSBoxesBatched(
        xywh.astype(np.float32), score[order].astype(np.float32), class_id[order].astype(np.int32), 0.0, iou
    )
    kept = np.asarray(kept, dtype=np.int64).reshape(-1)
    kept = kept[np.argsort(-score[order][kept], kind="stable")][:max_det]
    return order[kept]


def to_original_columnwise(box: Letterbox, xyxy: np.ndarray) -> np.ndarray:
    """to_original as it was: column pairs by fancy indexing, np.clip with scalar bounds."""
    out = np.empty_like(xyxy, dtype=np.float32)
    gx, gy = box.new_w / box.width, box.new_h / box.height
    out[:, [0, 2]] = np.clip((xyxy[:, [0, 2]] - box.pad_left) / gx, 0, box.width)
    out[:, [1, 3]] = np.clip((xyxy[:, [1, 3]] - box.pad_top) / gy, 0, box.height)
    return out


@pytest.mark.parametrize(
    ("h", "w"), [(480, 640), (640, 480), (320, 320), (1080, 1920), (37, 1999), (333, 17)]
)
def test_to_original_is_bit_identical_to_the_columnwise_mapping(h, w):
    box = Letterbox.fit(h, w, 320, 320)
    rng = np.random.default_rng(h * w)
    xyxy = rng.uniform(-40, 360, (500, 4)).astype(np.float32)
    xyxy[:5] = [
        [-0.0, 0.0, 320, 320],
        [box.pad_left, box.pad_top, -0.0, -0.0],
        [-1e-30, 1e30, -1e30, 0],
        [np.inf, -np.inf, np.nan, -np.nan],
        [0, 0, 0, 0],
    ]
    ours = box.to_original(xyxy)
    ref = to_original_columnwise(box, xyxy)
    assert ours.dtype == ref.dtype == np.float32
    assert ours.tobytes() == ref.tobytes()  # bit for bit: signed zeros and NaNs included
    assert box.to_original(xyxy[:0]).shape == (0, 4)


def fresh_prepare(images, writer: InputWriter, nchw: bool, in_hw=(320, 320)) -> np.ndarray:
    """What Detector.prepare did before the tensors were reused: a new tensor, filled, per batch."""
    tensor = np.empty((len(images), *in_hw, 3), dtype=writer.dtype)
    tensor[...] = writer.pad
    for i, image in enumerate(images):
        box = Letterbox.fit(image.shape[0], image.shape[1], *in_hw)
        if (box.new_w, box.new_h) != (image.shape[1], image.shape[0]):
            image = cv2.resize(image, (box.new_w, box.new_h), interpolation=cv2.INTER_LINEAR)
        region = tensor[i, box.pad_top : box.pad_top + box.new_h, box.pad_left : box.pad_left + box.new_w]
        writer.write(image, region)
    return np.ascontiguousarray(tensor.transpose(0, 3, 1, 2)) if nchw else tensor


@pytest.mark.parametrize(
    ("dtype", "scale", "zero", "nchw"),
    [(np.uint8, 1 / 255, 0, False), (np.int8, 1 / 255, -128, False), (np.float32, 0.0, 0, True)],
)
def test_reused_tensors_equal_fresh_ones_whatever_the_sizes_and_their_order(dtype, scale, zero, nchw):
    rng = np.random.default_rng(3)
    sizes = [(480, 640), (640, 480), (320, 320), (240, 800), (100, 100)]
    writer = InputWriter(np.dtype(dtype), scale, zero, rgb=True)
    pre = Preprocessor((320, 320), writer, nchw=nchw)
    for _ in range(40):
        n = int(rng.integers(1, 5))
        images = [
            rng.integers(0, 256, (*sizes[int(rng.integers(len(sizes)))], 3), dtype=np.uint8) for _ in range(n)
        ]
        prepared = pre.prepare(images)
        assert prepared.tensor.flags.c_contiguous
        np.testing.assert_array_equal(prepared.tensor, fresh_prepare(images, writer, nchw))
        pre.release(prepared)


@pytest.mark.parametrize("seed", range(30))
def test_nms_on_lists_keeps_what_nms_on_arrays_kept(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    centres = rng.uniform(0, 320, (max(1, n // 8), 2))  # clusters, so that NMS has work
    xy = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 6, (n, 2))
    wh = rng.uniform(4, 60, (n, 2))
    xyxy = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1).astype(np.float32)
    score = rng.uniform(0.25, 1, n).astype(np.float32)
    if seed % 2:
        score = (np.round(score * 64) / 64).astype(np.float32)  # INT8-like steps: many exact ties
    class_id = rng.integers(0, 3, n)
    for iou, max_det in ((0.45, 300), (0.7, 10), (0.1, 1000)):
        ours = nms(xyxy, score, class_id, iou, max_det)
        assert ours.tobytes() == nms_arrays(xyxy, score, class_id, iou, max_det).tobytes()


# --------------------------------------------------------------------------- the whole detector


def detect_before(det: Detector, images: list[np.ndarray], monkeypatch: pytest.MonkeyPatch):
    """Detector.detect with the prepare, NMS and to_original it had before."""
    writer = det.preprocessor.writer
    with monkeypatch.context() as m:
        m.setattr(yolo, "nms", nms_arrays)
        m.setattr(Letterbox, "to_original", to_original_columnwise)
        tensor = fresh_prepare(images, writer, det.info.input_layout == "NCHW", det.info.input_hw)
        boxes = tuple(Letterbox.fit(i.shape[0], i.shape[1], *det.info.input_hw) for i in images)
        prepared = Prepared(tensor, boxes)
        return det.decode(det.infer(prepared), prepared)


def bundled_images() -> list[np.ndarray]:
    images = [cv2.imread(str(p)) for p in sorted(bundled_test_images().glob("*.jpg"))]
    # Other sizes in the same batches, so the reused tensors change geometry under the images.
    return [
        *images,
        cv2.resize(images[0], (500, 260)),
        cv2.resize(images[1], (260, 500)),
        images[2][:320, :320],
    ]


@pytest.mark.parametrize("model", ["shapes-s_int8.tflite", "shapes-s.onnx"])
@pytest.mark.parametrize("conf", [0.25, 0.01])
def test_detections_on_the_bundled_images_are_bit_identical(model, conf, monkeypatch):
    det = open_detector(DetectorConfig(model=str(bundled_dir() / model), conf=conf))
    try:
        images = bundled_images()
        found = 0
        for size in (1, 4, 3):
            for start in range(0, len(images), size):
                batch = images[start : start + size]
                for after, before in zip(
                    det.detect(batch), detect_before(det, batch, monkeypatch), strict=True
                ):
                    for field in ("xyxy", "confidence", "class_id"):
                        a, b = getattr(after, field), getattr(before, field)
                        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), field
                    found += len(after)
        assert found > 3 * len(images)  # the comparison saw detections, not only empty lists
    finally:
        det.close()
