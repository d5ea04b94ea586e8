"""Evaluate the exported detectors with pycocotools and write the metrics into models/bundled/manifest.json.

Runs in the runtime's environment (no TensorFlow): decoding is the runtime's own
(``edgeinfer.detect.build.open_detector``: letterbox, dequantize, NMS), so the numbers are what users get.

    .venv/bin/python models/evaluate.py --variant shapes-s
    .venv/bin/python models/evaluate.py --check-testimages   # P/R at conf 0.25, IoU 0.5 on the bundled set
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import bundled_manifest
import cv2
import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from edgeinfer.config import DetectorConfig
from edgeinfer.detect.build import open_detector

HERE = Path(__file__).resolve().parent
WORK = Path(os.environ.get("SHAPES_WORK", HERE / "work"))
BUNDLED = HERE / "bundled"
NAMES = ("circle", "square", "triangle")


def load_split(split_dir: Path, labels_name: str) -> tuple[list[Path], dict[str, list[dict[str, Any]]]]:
    labels = json.loads((split_dir / labels_name).read_text(encoding="utf-8"))
    return [split_dir / name for name in sorted(labels)], labels


def run_model(model: Path, files: list[Path], conf: float, iou: float) -> list[Any]:
    det = open_detector(DetectorConfig(model=str(model), conf=conf, iou=iou, max_det=300, threads=2))
    try:
        return [det.detect([cv2.imread(str(f))])[0] for f in files]
    finally:
        det.close()


def coco_map(files: list[Path], labels: dict[str, list[dict[str, Any]]], dets: list[Any]) -> dict[str, float]:
    """(mAP50, mAP50-95) with COCOeval; boxes in original-image pixels."""
    images, anns, results = [], [], []
    for img_id, (f, d) in enumerate(zip(files, dets, strict=True), start=1):
        images.append({"id": img_id, "file_name": f.name, "width": 640, "height": 480})
        for obj in labels[f.name]:
            x1, y1, x2, y2 = obj["box"]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img_id,
                    "category_id": int(obj["class_id"]) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
        for box, score, cls in zip(d.xyxy, d.confidence, d.class_id, strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            results.append(
                {
                    "image_id": img_id,
                    "category_id": int(cls) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": float(score),
                }
            )
    gt = COCO()
    gt.dataset = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(NAMES)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(results) if results else COCO()
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"mAP50": round(float(ev.stats[1]), 4), "mAP50_95": round(float(ev.stats[0]), 4)}


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a[:, None] + area_b[None] - inter + 1e-9)


def precision_recall(labels: dict[str, list[dict[str, Any]]], files: list[Path], dets: list[Any]) -> tuple:
    """Greedy class-aware matching at IoU 0.5: (precision, recall, tp, fp, fn)."""
    tp = fp = fn = 0
    for f, d in zip(files, dets, strict=True):
        gt = labels[f.name]
        gtb = np.array([o["box"] for o in gt], np.float32).reshape(-1, 4)
        gtc = np.array([o["class_id"] for o in gt], np.int64)
        used = np.zeros(len(gt), bool)
        order = np.argsort(-d.confidence)
        ious = _iou(d.xyxy[order].astype(np.float32), gtb) if len(gt) else np.zeros((len(order), 0))
        for k, j in enumerate(order):
            cand = np.where((~used) & (gtc == d.class_id[j]) & (ious[k] >= 0.5))[0]
            if len(cand):
                used[cand[np.argmax(ious[k, cand])]] = True
                tp += 1
            else:
                fp += 1
        fn += int((~used).sum())
    return tp / max(tp + fp, 1), tp / max(tp + fn, 1), tp, fp, fn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", default="shapes-s")
    ap.add_argument("--limit", type=int, default=0, help="evaluate only the first N test images")
    ap.add_argument("--no-manifest", action="store_true")
    ap.add_argument("--onnx", action="store_true", help="also evaluate the ONNX sibling")
    ap.add_argument("--check-testimages", action="store_true")
    a = ap.parse_args()
    if a.check_testimages:
        files, labels = load_split(BUNDLED / "testimages", "truth.json")
        for fmt in ("int8", "float32"):
            dets = run_model(BUNDLED / f"{a.variant}_{fmt}.tflite", files, conf=0.25, iou=0.45)
            p, r, tp, fp, fn = precision_recall(labels, files, dets)
            print(
                f"{a.variant} {fmt} testimages conf 0.25: precision {p:.3f} recall {r:.3f} (tp {tp} fp {fp} fn {fn})"
            )
        return
    files, labels = load_split(WORK / "test", "labels.json")
    if a.limit:
        files = files[: a.limit]
    metrics: dict[str, Any] = {"test_images": len(files)}
    models = {"float32": f"{a.variant}_float32.tflite", "int8": f"{a.variant}_int8.tflite"}
    if a.onnx:
        models["onnx"] = f"{a.variant}.onnx"
    for fmt, name in models.items():
        t0 = time.time()
        dets = run_model(BUNDLED / name, files, conf=0.001, iou=0.6)
        metrics[fmt] = coco_map(files, labels, dets)
        p, r, *_ = precision_recall(labels, files, [d.select(d.confidence >= 0.25) for d in dets])
        metrics[fmt]["precision@0.25"], metrics[fmt]["recall@0.25"] = round(p, 4), round(r, 4)
        print(f"{a.variant} {fmt}: {metrics[fmt]} ({time.time() - t0:.0f}s)", flush=True)
    if not a.no_manifest:
        data = bundled_manifest.read()
        entry = bundled_manifest.entry(data, a.variant)
        entry["metrics"] = {  # what was not measured here (quantize_onnx.py's "onnx") is kept
            **entry.get("metrics", {}),
            "test_images": metrics["test_images"],
            "split": "models/work/test (random_scene seeds 3000000+i, 640x480)",
            "float32": metrics["float32"],
            "int8": metrics["int8"],
            **({"onnx": metrics["onnx"]} if "onnx" in metrics else {}),
        }
        bundled_manifest.write(data)


if __name__ == "__main__":
    main()
