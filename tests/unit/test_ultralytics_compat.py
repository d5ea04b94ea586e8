"""Real Ultralytics exports through edgeinfer: layout, names, box scale, batching, and Ultralytics' own predictions.

The fixtures in tests/fixtures/ultralytics/ultralytics-<version>/ are tiny YOLO models exported by Ultralytics
itself (models/ultralytics_fixtures/generate.py, see its README); each fixtures.json entry records the export
arguments, the tensors as exported, what edgeinfer should recognise, and the detections that
``YOLO(file).predict(image, imgsz, conf, iou, max_det)`` returned for the images in images/. No torch and no
ultralytics here: only edgeinfer, numpy, OpenCV and the runtimes.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edgeinfer.config import DetectorConfig
from edgeinfer.detect.build import open_detector
from edgeinfer.detect.detections import Detections
from edgeinfer.detect.preprocess import Letterbox

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ultralytics"
REPO = Path(__file__).resolve().parents[2]


def _runtime(path: str) -> str:
    return "ai_edge_litert" if path.endswith(".tflite") else "onnxruntime"


def _entries() -> list[Any]:
    params = []
    for manifest in sorted(FIXTURES.glob("ultralytics-*/fixtures.json")):
        data = json.loads(manifest.read_text())
        for entry in data["fixtures"]:
            if "file" not in entry:
                continue  # an export that failed at generation time (recorded with its error)
            entry = {**entry, "ultralytics": data["ultralytics"]}
            marks = []
            if importlib.util.find_spec(_runtime(entry["file"])) is None:
                marks.append(pytest.mark.skip(reason=f"{_runtime(entry['file'])} is not installed"))
            params.append(pytest.param(entry, id=entry["file"], marks=marks))
    return params


ENTRIES = _entries()


def _images() -> dict[str, np.ndarray]:
    return {p.name: cv2.imread(str(p)) for p in sorted((FIXTURES / "images").glob("*.png"))}


def _open(entry: dict[str, Any], **kwargs: Any):
    args = entry["predict_args"]
    return open_detector(
        DetectorConfig(
            model=str(FIXTURES / entry["file"]),
            conf=args["conf"],
            iou=args["iou"],
            max_det=args["max_det"],
            **kwargs,
        )
    )


def _quantized(entry: dict[str, Any]) -> bool:
    """INT8 inside (even with float input/output): scores come in steps, with many exact ties."""
    name = Path(entry["file"]).name
    return "int8" in name or "quant" in name


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def as_ultralytics(det: Detections, image: np.ndarray, in_hw: tuple[int, int], version: str) -> Detections:
    """edgeinfer's boxes mapped back the way that Ultralytics version's scale_boxes does it, and clipped to the
    image as it does (edgeinfer does not clip today: test_boxes_are_clipped_to_the_image).

    Through 8.3.x one gain min(in_h / h, in_w / w) for both axes (edgeinfer's Letterbox.to_original); 8.4.x
    divides by the per-axis gain of the rounded resize, new_w / w and new_h / h
    (test_box_scale_matches_ultralytics_8_4)."""
    h, w = image.shape[:2]
    box = Letterbox.fit(h, w, *in_hw)
    xyxy = box.to_input(det.xyxy) if len(det) else det.xyxy.copy()
    gx = gy = box.scale
    if tuple(int(v) for v in version.split(".")[:2]) >= (8, 4):
        gx, gy = box.new_w / w, box.new_h / h
    xyxy[:, [0, 2]] = (xyxy[:, [0, 2]] - box.pad_left) / gx
    xyxy[:, [1, 3]] = (xyxy[:, [1, 3]] - box.pad_top) / gy
    limit = np.array([w, h, w, h], np.float32)
    xyxy = np.clip(xyxy, 0, limit)
    if len(det):  # coordinates edgeinfer already clipped stay on the image border whatever the gain
        xyxy = np.where(det.xyxy >= limit, limit, np.where(det.xyxy <= 0, 0, xyxy))
    return Detections(xyxy.astype(np.float32), det.confidence, det.class_id)


def assert_same_detections(
    got: Detections,
    expected: dict[str, list],
    *,
    conf: float,
    max_det: int,
    px: float,
    score: float,
    ties: bool = False,
) -> None:
    """Every detection of one side has a counterpart on the other (same class, box within px, score within
    score), except those that may fall either way of a threshold: within `score` of conf, or of the last
    score kept when max_det cut the list.

    ``ties``: an INT8 model's scores come in quantization steps, so many boxes tie exactly and which of the tied
    boxes NMS keeps depends on the sort (torchvision's vs OpenCV's), and that changes what they suppress. Then
    only the score distribution and half of the detections are required to agree."""
    if ties:
        exp_scores = np.sort(np.asarray(expected["scores"], np.float32))[::-1]
        assert abs(len(got) - len(exp_scores)) <= max(2, 0.3 * len(exp_scores)), (len(got), len(exp_scores))
        if len(exp_scores):
            assert abs(float(got.confidence.max()) - float(exp_scores[0])) <= score
        exp_xyxy = np.asarray(expected["boxes"], np.float32).reshape(-1, 4)
        exp_cls = np.asarray(expected["classes"], np.int64)
        found = 0
        for box, cls, sc in zip(exp_xyxy, exp_cls, exp_scores, strict=True):
            near = (
                (got.class_id == cls)
                & (np.abs(got.xyxy - box).max(axis=1) <= px)
                & (np.abs(got.confidence - sc) <= score)
            )
            found += bool(near.any())
        assert found >= len(exp_scores) / 2, f"{found} of {len(exp_scores)} of Ultralytics' detections found"
        return
    exp_xyxy = np.asarray(expected["boxes"], np.float32).reshape(-1, 4)
    exp_score = np.asarray(expected["scores"], np.float32)
    exp_cls = np.asarray(expected["classes"], np.int64)
    cut = conf + score
    if len(exp_score) >= max_det or len(got) >= max_det:
        cut = max(cut, float(min(exp_score.min(initial=1.0), got.confidence.min(initial=1.0))) + score)
    iou = _iou(exp_xyxy, got.xyxy) if len(exp_score) and len(got) else np.zeros((len(exp_score), len(got)))
    iou[exp_cls[:, None] != got.class_id[None, :]] = 0
    used: set[int] = set()
    for i in np.argsort(-exp_score):
        candidates = [j for j in np.argsort(-iou[i]) if j not in used and iou[i, j] > 0.5]
        if not candidates:
            assert exp_score[i] < cut, (
                f"Ultralytics' detection {exp_xyxy[i]} class {exp_cls[i]} score {exp_score[i]:.4f} "
                f"has no counterpart in edgeinfer's {got.xyxy.round(2).tolist()} {got.confidence.round(4).tolist()}"
            )
            continue
        j = candidates[0]
        used.add(int(j))
        np.testing.assert_allclose(got.xyxy[j], exp_xyxy[i], atol=px, err_msg="box differs from Ultralytics'")
        assert abs(float(got.confidence[j]) - float(exp_score[i])) <= score, (
            f"score {got.confidence[j]:.5f} vs Ultralytics' {exp_score[i]:.5f}"
        )
    extra = [j for j in range(len(got)) if j not in used and got.confidence[j] >= cut]
    assert not extra, (
        f"edgeinfer found {got.xyxy[extra].round(2).tolist()} scores {got.confidence[extra].tolist()} "
        f"that Ultralytics did not: {expected}"
    )


def test_fixtures_present() -> None:
    """Both export paths are committed (the LiteRT/litert-torch one, and the onnx2tf one), with predictions."""
    manifests = sorted(FIXTURES.glob("ultralytics-*/fixtures.json"))
    assert manifests, "no Ultralytics fixtures: run models/ultralytics_fixtures/generate.py"
    layouts = {
        (e["expected"]["input_layout"], e["file"].rsplit(".", 1)[1]) for e in (p.values[0] for p in ENTRIES)
    }
    assert ("NCHW", "onnx") in layouts
    assert ("NCHW", "tflite") in layouts
    assert ("NHWC", "tflite") in layouts
    for param in ENTRIES:
        assert param.values[0]["predictions"], param.values[0]["file"]


@pytest.mark.parametrize("entry", ENTRIES)
def test_recognised(entry: dict[str, Any]) -> None:
    detector = _open(entry)
    try:
        expected = entry["expected"]
        assert detector.info.output_layout == expected["output_layout"]
        assert detector.info.input_layout == expected["input_layout"]
        assert detector.info.normalized_boxes == expected["normalized_boxes"]
        assert detector.labels == entry["names"] == ["circle", "square", "triangle"]
        assert detector.info.input_hw == tuple(entry["export_args"]["imgsz"] for _ in range(2))
        assert detector.info.channels == "RGB"
        # The metadata Ultralytics stores with the model is read back whole.
        assert detector.info.metadata.get("task") == "detect"
        assert str(detector.info.metadata.get("version")) == entry["ultralytics"]
        if expected.get("input_dtype"):
            assert detector.backend.input.dtype == np.dtype(expected["input_dtype"])
    finally:
        detector.close()


@pytest.mark.parametrize("entry", ENTRIES)
def test_matches_ultralytics_predictions(entry: dict[str, Any]) -> None:
    """edgeinfer's decoded detections for the exported file are the ones Ultralytics itself predicts."""
    args = entry["predict_args"]
    detector = _open(entry)
    try:
        quant = _quantized(entry)
        for name, image in _images().items():
            if entry["export_args"].get("dynamic") and image.shape[0] != image.shape[1]:
                continue  # Ultralytics ran the dynamic model on a minimal rectangle (64x48), not on 64x64
            (got,) = detector.detect([image])
            assert_same_detections(
                as_ultralytics(got, image, detector.info.input_hw, entry["ultralytics"]),
                entry["predictions"][name],
                conf=args["conf"],
                max_det=args["max_det"],
                px=1.5 if quant else 0.1,
                score=0.02 if quant else 2e-3,
                ties=quant,
            )
    finally:
        detector.close()


def test_boxes_are_clipped_to_the_image() -> None:
    outside = []
    for param in ENTRIES:
        entry = param.values[0]
        if param.marks:
            continue
        detector = _open(entry)
        try:
            for name, image in _images().items():
                (got,) = detector.detect([image])
                h, w = image.shape[:2]
                if len(got) and (got.xyxy.min() < 0 or (got.xyxy > np.array([w, h, w, h])).any()):
                    outside.append(f"{entry['file']} {name}: {got.xyxy.min():.1f}..{got.xyxy.max():.1f}")
        finally:
            detector.close()
    assert not outside, outside


def test_box_scale_matches_ultralytics_8_4() -> None:
    entry = next(p.values[0] for p in ENTRIES if p.values[0]["file"].endswith("8.4.190/yolo11t.onnx"))
    detector = _open(entry)
    try:
        for name, image in _images().items():
            (got,) = detector.detect([image])
            h, w = image.shape[:2]
            xyxy = np.clip(got.xyxy, 0, np.array([w, h, w, h], np.float32))
            ours = Detections(xyxy, got.confidence, got.class_id)
            args = entry["predict_args"]
            assert_same_detections(
                ours,
                entry["predictions"][name],
                conf=args["conf"],
                max_det=args["max_det"],
                px=0.1,
                score=2e-3,
            )
    finally:
        detector.close()


@pytest.mark.parametrize("entry", ENTRIES)
def test_batch_of_three_equals_one_by_one(entry: dict[str, Any]) -> None:
    detector = _open(entry)
    try:
        images = list(_images().values())
        assert len(images) == 3
        batched = detector.detect(images)
        assert len(batched) == 3
        for image, together in zip(images, batched, strict=True):
            (alone,) = detector.detect([image])
            assert len(alone) == len(together)
            np.testing.assert_allclose(together.xyxy, alone.xyxy, atol=1e-3)
            np.testing.assert_allclose(together.confidence, alone.confidence, atol=1e-5)
            np.testing.assert_array_equal(together.class_id, alone.class_id)
    finally:
        detector.close()


@pytest.mark.parametrize("entry", ENTRIES)
def test_model_inspect_json(entry: dict[str, Any]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "edgeinfer", "model", "inspect", "--json", str(FIXTURES / entry["file"])],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    expected = entry["expected"]
    assert data["yolo_layout"] == expected["output_layout"]
    assert data["input_layout"] == expected["input_layout"]
    assert data["boxes"] == ("normalized" if expected["normalized_boxes"] else "pixels")
    assert data["names"] == ["circle", "square", "triangle"]
    assert data["num_classes"] == 3
    assert data["input_size"] == [entry["export_args"]["imgsz"]] * 2
    assert data["input"]["shape"] == entry["tensors"]["inputs"][0]["shape"] or "dynamic" in entry["file"]
