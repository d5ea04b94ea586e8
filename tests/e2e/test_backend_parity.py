"""The bundled model in each runtime and precision on the bundled test images: LiteRT INT8, ONNX Runtime
INT8 (models/quantize_onnx.py) and float32 TFLite each find what float32 ONNX finds (same class, IoU >=
0.8), and each one's precision and recall against the images' ground truth.

The bar is >= 95 % of float32's boxes for each. Measured: LiteRT INT8 113/113, ONNX INT8 112/113, float32
TFLite 113/113. The LiteRT INT8 file is integer up to the heads' last convs and decodes in float with a
float32 output (models/export.py); the fully integer decode it replaced put the boxes through int8
tensors, the last one shared with the scores (1.5 input pixels per step), and found 106/113."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeinfer.config import DetectorConfig
from edgeinfer.detect.assets import bundled_dir, resolve_model
from edgeinfer.detect.assets import (
    test_images_dir as bundled_test_images,  # not a test: pytest collects test_*
)
from edgeinfer.detect.build import open_detector
from edgeinfer.detect.detections import Detections

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models"))
from evaluate import _iou, precision_recall

REFERENCE = "shapes-s.onnx"
# model -> the share of float32's boxes it must find
CANDIDATES = {"shapes-s_int8.tflite": 0.95, "shapes-s_int8.onnx": 0.95, "shapes-s_float32.tflite": 0.95}


def _detect(model: str) -> tuple[list[Path], list[Detections]]:
    files = sorted(bundled_test_images().glob("*.jpg"))
    detector = open_detector(DetectorConfig(model=str(bundled_dir() / model), threads=1))
    try:
        return files, [detector.detect([cv2.imread(str(f))])[0] for f in files]
    finally:
        detector.close()


def _matched(reference: list[Detections], candidate: list[Detections], iou: float = 0.8) -> tuple[int, int]:
    """(reference boxes with a same-class candidate box at IoU >= iou, reference boxes)."""
    hit = total = 0
    for ref, got in zip(reference, candidate, strict=True):
        total += len(ref.class_id)
        if not len(ref.class_id) or not len(got.class_id):
            continue
        ious = _iou(ref.xyxy.astype(np.float32), got.xyxy.astype(np.float32))
        same = ref.class_id[:, None] == got.class_id[None, :]
        hit += int(((ious >= iou) & same).any(axis=1).sum())
    return hit, total


@pytest.fixture(scope="module")
def reference() -> list[Detections]:
    return _detect(REFERENCE)[1]


@pytest.mark.parametrize(("model", "share"), CANDIDATES.items())
def test_each_runtime_finds_what_float32_finds(
    model: str, share: float, reference: list[Detections], record_property
) -> None:  # type: ignore[no-untyped-def]
    files, dets = _detect(model)
    hit, total = _matched(reference, dets)
    assert total >= 50  # the reference really found the scenes' objects
    assert hit / total >= share, (model, hit, total)
    truth = json.loads((bundled_test_images() / "truth.json").read_text(encoding="utf-8"))
    precision, recall, *_ = precision_recall(truth, files, dets)
    record_property("precision", round(precision, 3))
    record_property("recall", round(recall, 3))
    print(f"{model}: {hit}/{total} of float32's boxes; precision {precision:.3f} recall {recall:.3f}")
    assert precision >= 0.8 and recall >= 0.9, (precision, recall)


def test_bundled_with_onnxruntime_is_the_int8_onnx() -> None:
    assert resolve_model("bundled", "onnxruntime").name == "shapes-s_int8.onnx"
    assert resolve_model("bundled").name == "shapes-s_int8.tflite"
    detector = open_detector(DetectorConfig(backend="onnxruntime", threads=1))
    try:
        assert detector.info.backend == "onnxruntime"
        assert detector.labels == ["circle", "square", "triangle"]  # from the ONNX metadata_props
    finally:
        detector.close()
