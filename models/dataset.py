"""Generate the synthetic train/val/test splits into models/work/ (deterministic by seed).

Train/val images are stored letterboxed to the model input (320x320 RGB uint8, .npy) with boxes in
input pixels; the test split is stored as the original 640x480 BGR PNG frames plus a JSON label file,
so that evaluation runs the same preprocessing as the runtime.

    python models/dataset.py --train 12000 --val 500 --test 1000
"""

from __future__ import annotations

import argparse
import json
import os
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np

from edgeinfer.synthetic import CLASS_NAMES, random_scene

WORK = Path(os.environ.get("SHAPES_WORK", Path(__file__).resolve().parent / "work"))
IMGSZ = 320
SRC_W, SRC_H = 640, 480
SEEDS = {"train": 1_000_000, "val": 2_000_000, "test": 3_000_000}  # demo test images use 4_000_000


def letterbox(img_bgr: np.ndarray, size: int = IMGSZ) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize keeping aspect and pad with grey 114 (Ultralytics style) -> RGB image, scale, (padx, pady)."""
    h, w = img_bgr.shape[:2]
    r = min(size / w, size / h)
    nw, nh = round(w * r), round(h * r)
    px, py = (size - nw) // 2, (size - nh) // 2
    out = np.full((size, size, 3), 114, np.uint8)
    out[py : py + nh, px : px + nw] = cv2.resize(img_bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return out[..., ::-1].copy(), r, (px, py)


def _one(args: tuple[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    split, i = args
    rng = np.random.default_rng(SEEDS[split] + i)
    img, boxes, classes = random_scene(rng, SRC_W, SRC_H)
    lb, r, (px, py) = letterbox(img)
    b = boxes * r + np.array([px, py, px, py], np.float32)
    keep = img if split == "test" else np.zeros((0, 0, 3), np.uint8)  # originals only for test
    return keep, lb, b.astype(np.float32), classes, boxes


def make_split(split: str, n: int, workers: int = 2) -> None:
    out = WORK / split
    out.mkdir(parents=True, exist_ok=True)
    with Pool(workers) as pool:
        results = pool.map(_one, [(split, i) for i in range(n)], chunksize=64)
    if split == "test":
        labels = {}
        for i, (img, *_) in enumerate(results):
            cv2.imwrite(str(out / f"{i:05d}.png"), img)
        for i, (_, _, _, c, orig) in enumerate(results):
            labels[f"{i:05d}.png"] = [
                {"class_id": int(k), "label": CLASS_NAMES[int(k)], "box": [round(float(v), 2) for v in bb]}
                for bb, k in zip(orig, c, strict=True)
            ]
        (out / "labels.json").write_text(json.dumps(labels), encoding="utf-8")
    else:
        np.save(out / "images.npy", np.stack([r[1] for r in results]))
        boxes = np.zeros((n, 16, 4), np.float32)
        classes = np.full((n, 16), -1, np.int64)
        for i, (_, _, b, c, _) in enumerate(results):
            boxes[i, : len(c)] = b
            classes[i, : len(c)] = c
        np.save(out / "boxes.npy", boxes)
        np.save(out / "classes.npy", classes)
    print(f"{split}: {n} images -> {out}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--train", type=int, default=12000)
    ap.add_argument("--val", type=int, default=500)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--splits", default="train,val,test")
    a = ap.parse_args()
    for split in a.splits.split(","):
        make_split(split, getattr(a, split), a.workers)


if __name__ == "__main__":
    main()
