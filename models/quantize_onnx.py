"""INT8 for ONNX Runtime: static QDQ quantization of the float ONNX, calibrated on the synthetic train split.

    .venv/bin/pip install onnx                       # onnxruntime.quantization needs it (build time only)
    .venv/bin/python models/quantize_onnx.py         # writes models/bundled/shapes-s_int8.onnx
    .venv/bin/python models/quantize_onnx.py --evaluate   # + mAP (pycocotools) of float32 and int8 ONNX

Calibration images are ``random_scene`` frames from the train split's seeds (1e6+i), run through the
runtime's own letterbox (``Detector.prepare``), so the activation ranges are those the daemon feeds.
QDQ format with per-channel int8 weights and uint8 activations (MinMax calibration): ONNX Runtime's CPU
provider fuses the QuantizeLinear/DequantizeLinear pairs into its integer kernels. The graph's input and
output stay float, so the runtime's decoding is the same as for the float model. The Ultralytics-style
``metadata_props`` (names, imgsz, stride) are copied from the float model, so class names keep working.
The evaluation uses the test split's seeds (3e6+i), rendered in memory.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
BUNDLED = HERE / "bundled"
sys.path.insert(0, str(HERE))

import bundled_manifest  # noqa: E402
from dataset import SEEDS, SRC_H, SRC_W  # noqa: E402

from edgeinfer.config import DetectorConfig  # noqa: E402
from edgeinfer.detect.build import open_detector  # noqa: E402
from edgeinfer.detect.modelmeta import sha256_file  # noqa: E402
from edgeinfer.synthetic import random_scene  # noqa: E402


def _images(split: str, count: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    for i in range(count):
        yield random_scene(np.random.default_rng(SEEDS[split] + i), SRC_W, SRC_H)


def decode_tail(model: Any) -> list[str]:
    """The in-graph decode after the heads' last Concat (sigmoids, ltrb to boxes, the output Concat):
    kept in float. The output puts boxes in input pixels (0-320) beside scores in [0, 1]; one uint8 scale
    for both would leave the scores steps of 1.25 (the TFLite export normalises boxes for that reason)."""
    nodes = list(model.graph.node)
    last_head = max(
        i for i, n in enumerate(nodes) if n.op_type == "Concat" and n.output[0] != model.graph.output[0].name
    )
    return [n.name for n in nodes[last_head + 1 :]]


def quantize(float_model: Path, out: Path, calibration_images: int) -> None:
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    detector = open_detector(DetectorConfig(model=str(float_model), threads=2))
    input_name = detector.backend.input.name

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._images = _images("train", calibration_images)

        def get_next(self) -> dict[str, np.ndarray] | None:
            image = next(self._images, None)
            if image is None:
                return None
            return {input_name: detector.input_tensor([image[0]])}

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(float_model), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(out),
            Reader(),
            nodes_to_exclude=decode_tail(onnx.load(str(pre))),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
        )
    detector.close()
    source, model = onnx.load(str(float_model)), onnx.load(str(out))
    del model.metadata_props[:]
    for prop in source.metadata_props:
        model.metadata_props.add(key=prop.key, value=prop.value)
    onnx.save(model, str(out))


def evaluate(models: dict[str, Path], count: int) -> dict[str, dict[str, float]]:
    from evaluate import coco_map, precision_recall

    scenes = list(_images("test", count))
    files = [Path(f"{i:05d}.png") for i in range(count)]
    labels = {
        f.name: [
            {"class_id": int(c), "box": [float(v) for v in b]} for b, c in zip(boxes, classes, strict=True)
        ]
        for f, (_, boxes, classes) in zip(files, scenes, strict=True)
    }
    out = {}
    for name, path in models.items():
        detector = open_detector(DetectorConfig(model=str(path), conf=0.001, iou=0.6, max_det=300, threads=2))
        dets = [detector.detect([image])[0] for image, _, _ in scenes]
        detector.close()
        metrics: dict[str, Any] = coco_map(files, labels, dets)
        detector = open_detector(DetectorConfig(model=str(path), threads=2))
        p, r, *_ = precision_recall(labels, files, [detector.detect([image])[0] for image, _, _ in scenes])
        detector.close()
        out[name] = {**metrics, "precision@0.25": round(p, 4), "recall@0.25": round(r, 4)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="shapes-s")
    ap.add_argument("--calibration-images", type=int, default=300)
    ap.add_argument("--evaluate", action="store_true", help="mAP of float32 and int8 ONNX on the test seeds")
    ap.add_argument("--test-images", type=int, default=1000)
    a = ap.parse_args()
    float_model = BUNDLED / f"{a.variant}.onnx"
    out = BUNDLED / f"{a.variant}_int8.onnx"
    quantize(float_model, out, a.calibration_images)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, sha256 {sha256_file(out)})")
    if not a.evaluate:
        return
    metrics = evaluate({"onnx_float32": float_model, "onnx_int8": out}, a.test_images)
    print(json.dumps(metrics, indent=1))
    manifest = bundled_manifest.read()
    entry = bundled_manifest.entry(manifest, a.variant)
    entry["siblings"]["onnx_int8"] = out.name
    entry["siblings"]["onnx_int8_sha256"] = sha256_file(out)
    entry["siblings"]["onnx_int8_notes"] = (
        "QDQ static INT8 (per-channel int8 weights, uint8 activations, MinMax on "
        f"{a.calibration_images} train-seed scenes; the in-graph decode after the heads stays float); "
        "float NCHW input and output like the float ONNX"
    )
    entry["metrics"]["onnx"] = {"test_images": a.test_images, **metrics}
    bundled_manifest.write(manifest)
    print(f"updated {bundled_manifest.PATH}")


if __name__ == "__main__":
    main()
