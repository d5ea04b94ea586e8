"""Export a trained shapes detector: INT8 TFLite, float32 TFLite and float32 ONNX.

INT8 TFLite: post-training integer quantization of everything up to and including each head's last conv
(uint8 input, int8 weights and activations), with the decode step after those convs (sigmoid, ltrb ->
cx cy w h, concatenation) left in float and a float32 output tensor, as in Ultralytics' own int8 TFLite
exports. A fully integer decode put every box through int8 tensors, the last one shared with the scores
(0.0046 of the input size, 1.5 px per step at 320): about 0.5 px median box error against float32, and
7 of 113 boxes on the bundled test images under IoU 0.8 of float32's. See ``convert_int8``.

The TFLite files get Ultralytics-style metadata (a zip archive appended to the flatbuffer with one member
``metadata.json``); the ONNX file gets the same keys in ``metadata_props`` as Python-literal strings.

    python models/export.py --variant shapes-s [--weights models/work/ckpt/shapes-s.weights.h5]
    python models/export.py --variant shapes-s --only int8   # rewrite only <variant>_int8.tflite
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import architecture as A
import bundled_manifest
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
    """Append the Ultralytics-style zip (member metadata.json) to a .tflite file.

    The member's timestamp is fixed so that an export of the same weights gives the same bytes.
    """
    info = zipfile.ZipInfo("metadata.json", date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type, info.external_attr = zipfile.ZIP_STORED, 0o600 << 16  # as writestr(name) sets them
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr(info, json.dumps(meta, indent=2))


def update_manifest(variant: str, params: int, gflops: float, status: str) -> None:
    """Create/refresh this variant's manifest entry (metrics are filled in by evaluate.py)."""
    data = bundled_manifest.read()
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
            **old.get("siblings", {}),  # keeps what quantize_onnx.py added (the INT8 ONNX file)
            "float32_tflite": f"{variant}_float32.tflite",
            "onnx": f"{variant}.onnx",
            "onnx_notes": "float32, NCHW [1,3,320,320] RGB in [0,1]; output [1,7,2100], boxes in input pixels",
        },
        "metrics": old.get("metrics", {}) if status == "trained" else {},
    }
    data["models"] = [m for m in data["models"] if m["name"] != variant] + [entry]
    data["models"].sort(key=lambda m: m["name"] != "shapes-s")
    data["default"] = "shapes-s"
    bundled_manifest.write(data)


def representative_images(n: int = 200, seed: int = 0) -> np.ndarray:
    images = np.load(WORK / "train" / "images.npy", mmap_mode="r")
    idx = np.sort(np.random.default_rng(seed).choice(len(images), n, replace=False))
    return np.asarray(images[idx])


def saved_model(export_model: Any) -> Path:
    saved = WORK / "saved_model" / export_model.name
    export_model.export(str(saved), format="tf_saved_model", verbose=False)
    return saved


def convert_float(export_model: Any) -> bytes:
    return tf.lite.TFLiteConverter.from_saved_model(str(saved_model(export_model))).convert()


_PRED = re.compile(r"/pred\d{3}")  # the heads' last convs (architecture.build_graph names them pred<NNN>)


def _model_object(model: bytes) -> Any:
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils.read_model_from_bytearray(bytearray(model))


def _op_name(model: Any, op: Any) -> str:
    from tensorflow.lite.tools import flatbuffer_utils

    return str(flatbuffer_utils.opcode_to_name(model, op.opcodeIndex))


def decode_nodes(calibrated: bytes) -> list[str]:
    """Output tensor names of the decode step: every op fed, directly or not, by a head's last conv."""
    model = _model_object(calibrated)
    graph = model.subgraphs[0]
    fed: set[int] = set()
    nodes = []
    for op in graph.operators:
        if _op_name(model, op) == "CONV_2D" and _PRED.search(graph.tensors[op.outputs[0]].name.decode()):
            fed.update(int(t) for t in op.outputs)
        elif any(int(t) in fed for t in op.inputs):
            fed.update(int(t) for t in op.outputs)
            nodes += [graph.tensors[t].name.decode() for t in op.outputs]
    if not nodes or not set(int(t) for t in graph.outputs) <= fed:
        raise RuntimeError("could not find the decode step after the heads' pred convs")
    return nodes


def fold_float_qdq(model_bytes: bytes) -> bytes:
    """Drop each QUANTIZE -> DEQUANTIZE pair between two float tensors (a round trip through int8).

    ``mlir_quantize`` leaves one after each level's class-score LOGISTIC (at LOGISTIC's fixed int8 output
    scale, 1/256) although that LOGISTIC and everything after it are denylisted; without it the scores stay
    float like the boxes. Nothing else changes: the pair's two tensors are left behind unused.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = _model_object(model_bytes)
    graph = model.subgraphs[0]
    users: dict[int, list[Any]] = defaultdict(list)
    for op in graph.operators:
        for t in op.inputs:
            users[int(t)].append(op)
    graph_io = {int(t) for t in [*graph.inputs, *graph.outputs]}
    replace: dict[int, int] = {}
    drop: set[int] = set()
    for q in graph.operators:
        if _op_name(model, q) != "QUANTIZE":
            continue
        src, mid = int(q.inputs[0]), int(q.outputs[0])
        if graph.tensors[src].type != schema.TensorType.FLOAT32 or mid in graph_io or len(users[mid]) != 1:
            continue
        dq = users[mid][0]
        out = int(dq.outputs[0])
        if _op_name(model, dq) == "DEQUANTIZE" and out not in graph_io:
            replace[out] = src
            drop |= {id(q), id(dq)}
    for op in graph.operators:
        op.inputs = np.array([replace.get(int(t), int(t)) for t in op.inputs], np.int32)
    graph.operators = [op for op in graph.operators if id(op) not in drop]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def convert_int8(export_model: Any, calib: np.ndarray) -> bytes:
    """INT8 up to the heads' last convs, float decode; uint8 input, float32 output.

    Selective quantization as ``tf.lite.experimental.QuantizationDebugger`` does it (calibrate, then
    ``mlir_quantize`` with ``denylisted_nodes``), called directly so that the input can be uint8 (the
    debugger's ``get_nondebug_quantized_model`` keeps float input and output).
    """
    from tensorflow.lite.python import convert as lite_convert

    def rep() -> Any:
        for img in calib:
            yield [img[None].astype(np.float32) / 255.0]

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model(export_model)))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
    conv._experimental_calibrate_only = True  # what QuantizationDebugger sets: float model + ranges
    calibrated = conv.convert()
    model = lite_convert.mlir_quantize(
        calibrated,
        input_data_type=tf.uint8,
        output_data_type=tf.float32,
        denylisted_nodes=decode_nodes(calibrated),
    )
    return fold_float_qdq(model)


def describe_int8(model_bytes: bytes) -> str:
    """Which ops have a float output (the rest are int8), e.g. '44 of 156 ops with a float output: ADD x6, ...'."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = _model_object(model_bytes)
    graph = model.subgraphs[0]
    floats: dict[str, int] = defaultdict(int)
    for op in graph.operators:
        if graph.tensors[op.outputs[0]].type == schema.TensorType.FLOAT32:
            floats[_op_name(model, op)] += 1
    kinds = ", ".join(f"{k} x{n}" for k, n in sorted(floats.items()))
    return f"{sum(floats.values())} of {len(graph.operators)} ops with a float output: {kinds}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", default="shapes-s")
    ap.add_argument("--weights", default=None, help="Keras weights (.weights.h5); omitted = random init")
    ap.add_argument("--calib", type=int, default=1000)
    ap.add_argument("--status", default="trained", choices=["trained", "timing-only"])
    ap.add_argument(
        "--only",
        default="all",
        choices=["all", "int8"],
        help="int8: rewrite only <variant>_int8.tflite (and the manifest), leave the float files as they are",
    )
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
    onnx_path = BUNDLED / f"{a.variant}.onnx"
    if a.only == "all":
        f32.write_bytes(convert_float(exp))
        append_tflite_metadata(f32, meta)
    i8 = BUNDLED / f"{a.variant}_int8.tflite"
    i8.write_bytes(convert_int8(exp, representative_images(a.calib)))
    append_tflite_metadata(i8, meta)
    print("int8:", describe_int8(i8.read_bytes()))
    if a.only == "all":
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
    out_i8 = it8.get_tensor(outd["index"]).astype(np.float32)
    s, z = outd["quantization"]
    if s:  # a quantized output (the exports before the float decode)
        out_i8 = (out_i8 - z) * s
    conf = ref[0, 4:].max(0) > 0.25
    err = np.abs(out_i8 - ref)[0][:, conf]
    box_px = err[:4] * IMGSZ
    print(
        f"int8 vs float on {int(conf.sum())} confident anchors: box |diff| median "
        f"{np.median(box_px) if box_px.size else 0:.2f} px, max {box_px.max(initial=0):.2f} px; "
        f"score |diff| max {err[4:].max(initial=0):.3f}"
    )
    for p in (f32, i8, onnx_path):
        print(f"{p.name}: {p.stat().st_size} bytes")
    update_manifest(a.variant, raw.count_params(), A.count_flops(raw), a.status)


if __name__ == "__main__":
    main()
