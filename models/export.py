"""Export a trained shapes detector: INT8 TFLite (full integer), float32 TFLite and float32 ONNX.

The TFLite files get Ultralytics-style metadata (a zip archive appended to the flatbuffer with one member
``metadata.json``); the ONNX file gets the same keys in ``metadata_props`` as Python-literal strings.

    python models/export.py --variant shapes-s [--weights models/work/ckpt/shapes-s.weights.h5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import architecture as A
import numpy as np
import onnx_export
import tensorflow as tf

HERE = Path(__file__).resolve().parent
WORK = Path(os.environ.get("SHAPES_WORK", HERE / "work"))
BUNDLED = HERE / "bundled"
IMGSZ = 320
NAMES = ("circle", "square", "triangle")


def metadata(variant: str) -> dict[str, Any]:
    return {
        "description": f"edgeinfer {variant}: synthetic shapes detector (circle, square, triangle)",
        "author": "edgeinfer",
        "version": "0.1.0",
        "license": "Apache-2.0",
        "stride": 32,
        "task": "detect",
        "batch": 1,
        "imgsz": [IMGSZ, IMGSZ],
        "names": {str(i): n for i, n in enumerate(NAMES)},
    }


def append_tflite_metadata(path: Path, meta: dict[str, Any]) -> None:
    """Append the Ultralytics-style zip (member metadata.json) to a .tflite file."""
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("metadata.json", json.dumps(meta, indent=2))


def update_manifest(variant: str, params: int, gflops: float, status: str) -> None:
    """Create/refresh this variant's manifest entry (metrics are filled in by evaluate.py)."""
    path = BUNDLED / "manifest.json"
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"models": []}
    i8 = BUNDLED / f"{variant}_int8.tflite"
    old = next((m for m in data["models"] if m["name"] == variant), {})
    entry = {
        "name": variant,
        "file": i8.name,
        "sha256": hashlib.sha256(i8.read_bytes()).hexdigest(),
        "input": {"size": [IMGSZ, IMGSZ], "layout": "NHWC", "dtype": "uint8", "channels": "RGB"},
        "output_layout": "yolov8",
        "classes": list(NAMES),
        "params": params,
        "gflops": round(gflops, 3),
        "status": status,
        "siblings": {
            "float32_tflite": f"{variant}_float32.tflite",
            "onnx": f"{variant}.onnx",
            "onnx_notes": "float32, NCHW [1,3,320,320] RGB in [0,1]; output [1,7,2100], boxes in input pixels",
        },
        "metrics": old.get("metrics", {}) if status == "trained" else {},
    }
    data["models"] = [m for m in data["models"] if m["name"] != variant] + [entry]
    data["models"].sort(key=lambda m: m["name"] != "shapes-s")
    data["default"] = "shapes-s"
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def representative_images(n: int = 200, seed: int = 0) -> np.ndarray:
    images = np.load(WORK / "train" / "images.npy", mmap_mode="r")
    idx = np.sort(np.random.default_rng(seed).choice(len(images), n, replace=False))
    return np.asarray(images[idx])


def convert(export_model: Any, int8: bool, calib: np.ndarray | None = None) -> bytes:
    saved = WORK / "saved_model" / export_model.name
    export_model.export(str(saved), format="tf_saved_model", verbose=False)
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    if int8:
        assert calib is not None

        def rep() -> Any:
            for img in calib:
                yield [img[None].astype(np.float32) / 255.0]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.uint8
        conv.inference_output_type = tf.int8
    return conv.convert()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", default="shapes-s")
    ap.add_argument("--weights", default=None, help="Keras weights (.weights.h5); omitted = random init")
    ap.add_argument("--calib", type=int, default=1000)
    ap.add_argument("--status", default="trained", choices=["trained", "timing-only"])
    a = ap.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(2)
    raw = A.build_raw_model(a.variant, IMGSZ, len(NAMES))
    weights = Path(a.weights) if a.weights else WORK / "ckpt" / f"{a.variant}.weights.h5"
    if weights.is_file():
        raw.load_weights(weights)
        print(f"loaded {weights}")
    else:
        print(f"WARNING: {weights} not found, exporting random-init weights")
    exp = A.build_export_model(raw, IMGSZ, len(NAMES))
    BUNDLED.mkdir(parents=True, exist_ok=True)
    meta = metadata(a.variant)

    f32 = BUNDLED / f"{a.variant}_float32.tflite"
    f32.write_bytes(convert(exp, int8=False))
    append_tflite_metadata(f32, meta)
    i8 = BUNDLED / f"{a.variant}_int8.tflite"
    i8.write_bytes(convert(exp, int8=True, calib=representative_images(a.calib)))
    append_tflite_metadata(i8, meta)
    onnx_path = BUNDLED / f"{a.variant}.onnx"
    onnx_export.export(raw, a.variant, onnx_path, meta, IMGSZ, len(NAMES))

    # sanity: Keras vs float TFLite vs ONNX on a real image
    img = representative_images(1, seed=1)[0]
    x = img[None].astype(np.float32) / 255.0
    ref = exp(x, training=False).numpy()
    it = tf.lite.Interpreter(model_path=str(f32))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    out_f32 = it.get_tensor(it.get_output_details()[0]["index"])
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out_onnx = sess.run(None, {sess.get_inputs()[0].name: x.transpose(0, 3, 1, 2)})[0]
    out_onnx[:, :4] /= IMGSZ  # ONNX boxes are in input pixels (Ultralytics convention)
    print(f"keras vs float tflite max |diff| = {np.abs(ref - out_f32).max():.2e}")
    print(f"float tflite vs onnx max |diff| = {np.abs(out_f32 - out_onnx).max():.2e}")
    it8 = tf.lite.Interpreter(model_path=str(i8))
    it8.allocate_tensors()
    ind, outd = it8.get_input_details()[0], it8.get_output_details()[0]
    print("int8 input:", ind["dtype"].__name__, ind["shape"], ind["quantization"])
    print("int8 output:", outd["dtype"].__name__, outd["shape"], outd["quantization"])
    it8.set_tensor(ind["index"], img[None])
    it8.invoke()
    s, z = outd["quantization"]
    out_i8 = (it8.get_tensor(outd["index"]).astype(np.float32) - z) * s
    conf = ref[0, 4:].max(0) > 0.25
    print(
        f"int8 vs float max |diff| on confident anchors = {np.abs(out_i8 - ref)[0][:, conf].max(initial=0):.3f}"
    )
    for p in (f32, i8, onnx_path):
        print(f"{p.name}: {p.stat().st_size} bytes")
    update_manifest(a.variant, raw.count_params(), A.count_flops(raw), a.status)


if __name__ == "__main__":
    main()
