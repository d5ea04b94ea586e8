#!/usr/bin/env python3
"""What-if: the benchmark with the proposed faster ``Detector.prepare`` patched into the worker.

Evidence for the fix proposed in RESULTS.md (the code lives in lead-owned edgeinfer/detector.py, so it is
patched here at run time, not changed): when the input LUT is the identity (uint8 input, scale 1/255,
zero point 0, as in the bundled model) the per-image ``np.take`` (quantize + BGR->RGB) is replaced by
``cv2.cvtColor``; other 1-byte LUTs use ``cv2.LUT``. The produced tensor is identical.

    python benchmarks/whatif_prepare.py --cameras 4 --batch 4 --json /tmp/whatif.json   # any bench options
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgeinfer.detector import Detector, Prepared
from edgeinfer.preprocess import letterbox


def fast_prepare(self: Detector, images: Sequence[np.ndarray]) -> Prepared:
    in_h, in_w = self.info.input_hw
    lut = self._lut
    identity = lut.dtype == np.uint8 and np.array_equal(lut, np.arange(256))
    tensor = np.empty((len(images), in_h, in_w, 3), dtype=lut.dtype)
    canvas = np.empty((in_h, in_w, 3), np.uint8)
    boxes = []
    for i, image in enumerate(images):
        if identity and not self._swap:
            _, box = letterbox(image, in_h, in_w, out=tensor[i])
        else:
            canvas, box = letterbox(image, in_h, in_w, out=canvas)
            if identity:
                cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB, dst=tensor[i])
            elif lut.itemsize == 1:
                src = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB) if self._swap else canvas
                cv2.LUT(src, lut.view(np.uint8), dst=tensor[i].view(np.uint8))
            else:
                np.take(lut, canvas[..., ::-1] if self._swap else canvas, out=tensor[i])
        boxes.append(box)
    if self._nchw:
        tensor = np.ascontiguousarray(tensor.transpose(0, 3, 1, 2))
    return Prepared(tensor, tuple(boxes))


def main() -> int:
    if sys.argv[1:2] == ["--worker"]:
        from edgeinfer.bench import worker

        Detector.prepare = fast_prepare  # type: ignore[method-assign]
        return worker.main(sys.argv[2:])
    import argparse

    from edgeinfer.bench import report
    from edgeinfer.bench.cli import add_arguments, specs_from_args
    from edgeinfer.bench.runner import run_benchmark

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args()
    result = run_benchmark(
        specs_from_args(args), progress=not args.no_progress, worker=[sys.executable, __file__, "--worker"]
    )
    result["whatif"] = "Detector.prepare patched: cv2.cvtColor / cv2.LUT instead of np.take"
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    sys.stdout.write(report.markdown(result))
    return 0 if result["results"] else 1


if __name__ == "__main__":
    sys.exit(main())
