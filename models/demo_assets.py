"""Render the bundled demo assets: demo.mp4 + demo_truth.json (MovingScene) and testimages/ + truth.json.

Needs only numpy + OpenCV (runs in the runtime's .venv).

    python models/demo_assets.py
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from edgeinfer.synthetic import CLASS_NAMES, MovingScene, random_scene

BUNDLED = Path(__file__).resolve().parent / "bundled"
DEMO_SEED = 2026
DEMO_FRAMES = 80  # 8 s at 10 fps
DEMO_FPS = 10
TEST_SEED = 4_000_000  # held out: train/val/test splits use 1e6/2e6/3e6 + i
TEST_IMAGES = 24


def _objects(boxes: np.ndarray, classes: np.ndarray) -> list[dict[str, object]]:
    return [
        {"class_id": int(c), "label": CLASS_NAMES[int(c)], "box": [round(float(v), 2) for v in b]}
        for b, c in zip(boxes, classes, strict=True)
    ]


def demo_clip() -> None:
    scene = MovingScene(DEMO_SEED, 640, 480, n_objects=4)
    path = BUNDLED / "demo.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), DEMO_FPS, (640, 480))
    truth: dict[str, object] = {
        "source": f"edgeinfer.synthetic.MovingScene(seed={DEMO_SEED}, width=640, height=480, n_objects=4)",
        "fps": DEMO_FPS,
        "frames": {},
    }
    frames: dict[str, object] = {}
    for i in range(DEMO_FRAMES):
        img, boxes, classes = scene.render(i)
        writer.write(img)
        frames[str(i)] = _objects(boxes, classes)
    writer.release()
    truth["frames"] = frames
    (BUNDLED / "demo_truth.json").write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == DEMO_FRAMES, f"demo.mp4 reads back {n} frames, wrote {DEMO_FRAMES}"
    print(f"demo.mp4: {n} frames, {path.stat().st_size} bytes")


def test_images() -> None:
    out = BUNDLED / "testimages"
    out.mkdir(parents=True, exist_ok=True)
    truth = {}
    i = 0
    while len(truth) < TEST_IMAGES:
        img, boxes, classes = random_scene(np.random.default_rng(TEST_SEED + i))
        i += 1
        if len(classes) == 0:
            continue
        name = f"shapes_{len(truth):02d}.jpg"
        cv2.imwrite(str(out / name), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        truth[name] = _objects(boxes, classes)
    (out / "truth.json").write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    print(f"testimages: {len(truth)} images, {sum(len(v) for v in truth.values())} objects")


if __name__ == "__main__":
    BUNDLED.mkdir(parents=True, exist_ok=True)
    demo_clip()
    test_images()
