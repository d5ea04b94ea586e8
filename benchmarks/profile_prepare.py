#!/usr/bin/env python3
"""Where preprocessing time goes, and what the proposed fix gives (evidence for benchmarks/RESULTS.md).

Times ``Detector.prepare`` on one 640x480 synthetic frame and its parts (letterbox; the LUT ``np.take``
that fuses quantize + BGR->RGB), against a variant that uses ``cv2.cvtColor`` when the LUT is the
identity (uint8 input, scale 1/255, zero point 0: the bundled model) and ``cv2.LUT`` otherwise, and
checks the variant's tensor is identical. Run: ``python benchmarks/profile_prepare.py [--model bundled]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgeinfer.config import SyntheticSourceConfig
from edgeinfer.detector import open_detector
from edgeinfer.preprocess import letterbox
from edgeinfer.sources.synthetic import SyntheticReader


def best_ms(fn: Callable[[], object], n: int = 300) -> float:
    """Median of n runs, in ms (the machine may be shared; the median resists stragglers)."""
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bundled")
    args = parser.parse_args()
    reader = SyntheticReader(SyntheticSourceConfig(type="synthetic", prerender=1))
    image = reader.read()
    assert image is not None
    det = open_detector(args.model)
    in_h, in_w = det.info.input_hw
    lut = det._lut  # the detector's fused quantize table
    swap = det.info.channels == "RGB"
    identity = lut.dtype == np.uint8 and np.array_equal(lut, np.arange(256))
    canvas = np.empty((in_h, in_w, 3), np.uint8)
    out = np.empty((in_h, in_w, 3), lut.dtype)

    def proposed(images: list[np.ndarray]) -> np.ndarray:
        tensor = np.empty((len(images), in_h, in_w, 3), dtype=lut.dtype)
        for i, img in enumerate(images):
            if identity and swap:
                letterbox(img, in_h, in_w, out=canvas)
                cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB, dst=tensor[i])
            elif identity:
                letterbox(img, in_h, in_w, out=tensor[i])
            elif lut.itemsize == 1:
                letterbox(img, in_h, in_w, out=canvas)
                src = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB) if swap else canvas
                cv2.LUT(src, lut.view(np.uint8), dst=tensor[i].view(np.uint8))
            else:
                letterbox(img, in_h, in_w, out=canvas)
                np.take(lut, canvas[..., ::-1] if swap else canvas, out=tensor[i])
        return tensor

    same = np.array_equal(det.prepare([image]).tensor, proposed([image]))
    rows = [
        ("Detector.prepare (current), 1 frame", best_ms(lambda: det.prepare([image]))),
        ("  letterbox (cv2.resize + pad)", best_ms(lambda: letterbox(image, in_h, in_w, out=canvas))),
        ("  np.take(lut, canvas[..., ::-1])", best_ms(lambda: np.take(lut, canvas[..., ::-1], out=out))),
        ("proposed prepare, 1 frame", best_ms(lambda: proposed([image]))),
        ("Detector.prepare (current), 4 frames", best_ms(lambda: det.prepare([image] * 4), 100)),
        ("proposed prepare, 4 frames", best_ms(lambda: proposed([image] * 4), 100)),
    ]
    print(f"model {det.info.path.name}: input {in_h}x{in_w} {lut.dtype}, identity LUT: {identity}")
    for name, ms in rows:
        print(f"{name:40s} {ms:7.3f} ms")
    print(f"proposed tensor identical to current: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
