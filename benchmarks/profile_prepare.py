#!/usr/bin/env python3
"""Where preprocessing time goes: ``Detector.prepare`` against the lookup-table path it replaced.

Times ``Detector.prepare`` on one 640x480 synthetic frame and on four (each tensor given back, as
``Detector.infer`` does), its resize, and the reference ``np.take`` lookup table (quantize + BGR->RGB in
one table over the letterboxed uint8 canvas, what prepare did before the InputWriter shortcuts), and checks
both give the same tensor. Run: ``python benchmarks/profile_prepare.py``.
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

from edgeinfer.config import DetectorConfig, SyntheticSourceConfig
from edgeinfer.detect.build import open_detector
from edgeinfer.detect.preprocess import InputWriter, Letterbox, Preprocessor, input_lut
from edgeinfer.sources.synthetic import SyntheticReader


def median_ms(fn: Callable[[], object], n: int = 300) -> float:
    """Median of n runs, in ms (the machine may be shared; the median resists stragglers)."""
    fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="bundled")
    args = parser.parse_args()
    reader = SyntheticReader(SyntheticSourceConfig(type="synthetic", prerender=1))
    image = reader.read()
    assert image is not None
    det = open_detector(DetectorConfig(model=args.model))
    in_h, in_w = det.info.input_hw
    inp = det.backend.input
    lut = input_lut(inp.dtype, inp.scale, inp.zero_point)
    rgb = det.info.channels == "RGB"
    preprocessor = det.preprocessor
    # The letterbox alone: uint8 pixels as they are (the identity table), BGR kept.
    canvases = Preprocessor((in_h, in_w), InputWriter(np.dtype(np.uint8), 1 / 255, 0, rgb=False), nchw=False)

    def prepare(images: list[np.ndarray]) -> np.ndarray:
        prepared = det.prepare(images)
        preprocessor.release(prepared)  # what Detector.infer does once the runtime has returned
        return prepared.tensor

    def lut_prepare(images: list[np.ndarray]) -> np.ndarray:
        tensor = np.empty((len(images), in_h, in_w, 3), dtype=lut.dtype)
        prepared = canvases.prepare(images)
        for i, canvas in enumerate(prepared.tensor):
            np.take(lut, canvas[..., ::-1] if rgb else canvas, out=tensor[i])
        canvases.release(prepared)
        return tensor

    same = np.array_equal(det.prepare([image]).tensor, lut_prepare([image]))
    box = Letterbox.fit(image.shape[0], image.shape[1], in_h, in_w)
    rows = [
        ("Detector.prepare, 1 frame", median_ms(lambda: prepare([image]))),
        ("Detector.prepare, 4 frames", median_ms(lambda: prepare([image] * 4), 100)),
        ("  cv2.resize alone, 1 frame", median_ms(lambda: cv2.resize(image, (box.new_w, box.new_h)))),
        ("reference LUT path (np.take), 1 frame", median_ms(lambda: lut_prepare([image]))),
        ("reference LUT path (np.take), 4 frames", median_ms(lambda: lut_prepare([image] * 4), 100)),
    ]
    print(
        f"model {det.info.path.name}: input {in_h}x{in_w} {lut.dtype}, writer mode {preprocessor.writer.mode}"
    )
    for name, ms in rows:
        print(f"{name:42s} {ms:7.3f} ms")
    print(f"Detector.prepare tensor identical to the LUT reference: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
