#!/usr/bin/env python3
"""Hot-path micro-benchmarks: each changed function against the implementation it replaced, side by side.

The "before" functions below are copies of the code as it was (commit c0bd3dc): NMS fed numpy arrays,
``Letterbox.to_original`` by fancy-indexed column pairs, ``Detector.prepare`` allocating and filling a new
tensor per batch. Each pair is timed in interleaved rounds (before, after, before, after, ...) so that
machine noise hits both alike; the table gives the medians per call and after/before. Each pair's outputs
are checked bit-identical first. Run: ``python benchmarks/hotpath.py`` (about 30 s).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgeinfer.config import DetectorConfig
from edgeinfer.detect import yolo
from edgeinfer.detect.assets import test_images_dir
from edgeinfer.detect.build import open_detector
from edgeinfer.detect.detector import Detector
from edgeinfer.detect.nms import MAX_CANDIDATES, nms
from edgeinfer.detect.preprocess import Letterbox

# --------------------------------------------------------------------------- before (c0bd3dc)


def nms_arrays(
    xyxy: np.ndarray, score: np.ndarray, class_id: np.ndarray, iou: float, max_det: int
) -> np.ndarray:
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


def to_original_columns(self: Letterbox, xyxy: np.ndarray) -> np.ndarray:
    out = np.empty_like(xyxy, dtype=np.float32)
    gx, gy = self.new_w / self.width, self.new_h / self.height
    out[:, [0, 2]] = np.clip((xyxy[:, [0, 2]] - self.pad_left) / gx, 0, self.width)
    out[:, [1, 3]] = np.clip((xyxy[:, [1, 3]] - self.pad_top) / gy, 0, self.height)
    return out


def prepare_fresh(det: Detector, images: list[np.ndarray]) -> np.ndarray:
    in_h, in_w = det.info.input_hw
    writer = det.preprocessor.writer
    tensor = np.empty((len(images), in_h, in_w, 3), dtype=writer.dtype)
    tensor[...] = writer.pad
    for i, image in enumerate(images):
        box = Letterbox.fit(image.shape[0], image.shape[1], in_h, in_w)
        if (box.new_w, box.new_h) != (image.shape[1], image.shape[0]):
            image = cv2.resize(image, (box.new_w, box.new_h), interpolation=cv2.INTER_LINEAR)
        region = tensor[i, box.pad_top : box.pad_top + box.new_h, box.pad_left : box.pad_left + box.new_w]
        writer.write(image, region)
    if det.info.input_layout == "NCHW":
        tensor = np.ascontiguousarray(tensor.transpose(0, 3, 1, 2))
    return tensor


# --------------------------------------------------------------------------- timing


def paired(
    before: Callable[[], object], after: Callable[[], object], rounds: int, calls: int
) -> tuple[float, float]:
    """Median microseconds per call of each, over interleaved rounds of `calls` calls."""
    times: tuple[list[float], list[float]] = ([], [])
    before(), after()
    for _ in range(rounds):
        for fn, out in ((before, times[0]), (after, times[1])):
            t = time.perf_counter()
            for _ in range(calls):
                fn()
            out.append((time.perf_counter() - t) / calls * 1e6)
    return float(np.median(times[0])), float(np.median(times[1]))


def same(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return all(same(getattr(a, k), getattr(b, k)) for k in ("xyxy", "confidence", "class_id"))


def nms_inputs(det: Detector, image: np.ndarray) -> tuple:
    """What the decoder hands to NMS for one real image (the candidates above conf)."""
    captured = []

    def spy(*args):
        captured.append(args)
        return nms(*args)

    yolo.nms = spy
    try:
        det.detect([image])
    finally:
        yolo.nms = nms
    return captured[0]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    rounds = args.rounds
    images = [cv2.imread(str(p)) for p in sorted(test_images_dir().glob("*.jpg"))]
    rows: list[tuple[str, float, float]] = []
    checks: list[bool] = []

    def case(name: str, before: Callable[[], object], after: Callable[[], object], calls: int) -> None:
        checks.append(same(before(), after()))
        b, a = paired(before, after, rounds, calls)
        rows.append((name, b, a))

    det = open_detector(DetectorConfig())  # bundled shapes-s INT8, NHWC uint8
    for conf in (0.25, 0.01):
        xyxy, score, cls, iou, max_det = nms_inputs(
            det if conf == 0.25 else open_detector(DetectorConfig(conf=conf)), images[0]
        )
        case(
            f"NMS, {len(score)} candidates (bundled model, test image 0, conf {conf})",
            lambda xyxy=xyxy, score=score, cls=cls, iou=iou, max_det=max_det: nms_arrays(
                xyxy, score, cls, iou, max_det
            ),
            lambda xyxy=xyxy, score=score, cls=cls, iou=iou, max_det=max_det: nms(
                xyxy, score, cls, iou, max_det
            ),
            200,
        )
    box = Letterbox.fit(480, 640, 320, 320)
    rng = np.random.default_rng(1)
    for n in (4, 100):
        boxes = rng.uniform(-10, 330, (n, 4)).astype(np.float32)
        case(
            f"Letterbox.to_original, {n} boxes",
            lambda boxes=boxes: to_original_columns(box, boxes),
            lambda boxes=boxes: box.to_original(boxes),
            1000,
        )
    raw = det.infer(det.prepare([images[0]]))
    prepared = det.prepare([images[0]])
    to_original = Letterbox.to_original

    def decode_before() -> object:
        yolo.nms, Letterbox.to_original = nms_arrays, to_original_columns  # type: ignore[method-assign]
        try:
            return det.decode(raw, prepared)
        finally:
            yolo.nms, Letterbox.to_original = nms, to_original  # type: ignore[method-assign]

    case("Detector.decode, 1 image (all of the above)", decode_before, lambda: det.decode(raw, prepared), 200)

    def prepare_after(d: Detector, batch: list[np.ndarray]) -> np.ndarray:
        p = d.prepare(batch)
        d.preprocessor.release(p)  # what infer does when the runtime returns
        return p.tensor

    onnx = open_detector(DetectorConfig(model=str(det.info.path.with_name("shapes-s.onnx"))))
    for d, what in ((det, "uint8 NHWC (bundled INT8)"), (onnx, "float32 NCHW (shapes-s.onnx)")):
        for n in (1, 4):
            batch = images[:n]
            case(
                f"Detector.prepare, {n} x 640x480, {what}",
                lambda d=d, batch=batch: prepare_fresh(d, batch),
                lambda d=d, batch=batch: prepare_after(d, batch),
                50,
            )

    print(
        f"machine: {cpu_name()}, {os.cpu_count()} CPUs; Python {platform.python_version()}, "
        f"numpy {np.__version__}, OpenCV {cv2.__version__}"
    )
    print(f"load average before/after: {LOAD0} / {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"{rounds} interleaved rounds; median us per call")
    print("| function | before us | after us | after/before |")
    print("|---|---|---|---|")
    for name, b, a in rows:
        print(f"| {name} | {b:.1f} | {a:.1f} | {a / b:.2f} |")
    print(f"outputs bit-identical: {all(checks)}")
    return 0 if all(checks) else 1


LOAD0 = " ".join(f"{v:.2f}" for v in os.getloadavg())

if __name__ == "__main__":
    sys.exit(main())
