"""Recover the Keras weights (``.weights.h5``) of a bundled detector from its float32 ONNX sibling.

``onnx_export.py`` writes the ONNX graph from the trained Keras model through the same network description
(``architecture.build_graph``) with BatchNorm folded into each conv. This script walks ``build_graph`` with
a recording ops backend to get the conv / pred layer names in call order, which is also the order of the
ONNX ``Conv`` nodes, and loads each folded conv back into Keras: conv kernel = folded weight (OIHW ->
HWIO), BatchNorm = identity plus the folded bias (gamma 1, beta = bias, moving mean 0, moving variance
1 - epsilon, so that ``gamma / sqrt(var + eps)`` is 1). The result computes what the ONNX file computes,
which is what the trained model computed up to float rounding; the BN statistics themselves are gone,
so these weights are for exporting, not for continuing training (BN in training mode would renormalise).

    .venv-models/bin/python models/weights_from_onnx.py --variant shapes-s [--out models/work/ckpt/x.weights.h5]

It then checks the rebuilt export model against the shipped float32 TFLite and ONNX files on the bundled
test images (max |diff| of the decoded output, boxes normalised).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import architecture as A
import cv2
import numpy as np
import onnx
from dataset import letterbox
from export import BUNDLED, IMGSZ, NAMES, WORK
from onnx import numpy_helper

NUM_CLASSES = len(NAMES)


class RecordingOps:
    """An ops backend that only records the conv / pred layers build_graph creates, in call order."""

    def __init__(self) -> None:
        self.layers: list[tuple[str, str, int, int, int]] = []  # (kind, name, out channels, kernel, stride)

    def conv(self, x: Any, c: int, k: int, s: int, name: str) -> Any:
        self.layers.append(("conv", name, c, k, s))
        return x

    def pred(self, x: Any, c: int, bias: float, name: str) -> Any:
        self.layers.append(("pred", name, c, 1, 1))
        return x

    def concat(self, xs: list[Any]) -> Any:
        return xs[0]

    def add(self, a: Any, b: Any) -> Any:
        return a

    def maxpool5(self, x: Any) -> Any:
        return x

    def up2(self, x: Any) -> Any:
        return x


def onnx_convs(path: Path) -> list[tuple[np.ndarray, np.ndarray, list[int]]]:
    """(weight OIHW, bias, strides) of each Conv node of the ONNX graph, in graph order."""
    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        out.append((inits[node.input[1]], inits[node.input[2]], list(attrs.get("strides", [1, 1]))))
    return out


def load_from_onnx(raw: Any, variant: str, onnx_path: Path) -> int:
    """Set the raw Keras model's conv / BN / pred weights from the ONNX file; returns the layers set."""
    rec = RecordingOps()
    A.build_graph(rec, None, A.VARIANTS[variant], NUM_CLASSES)
    convs = onnx_convs(onnx_path)
    if len(convs) != len(rec.layers):
        raise SystemExit(f"{onnx_path.name}: {len(convs)} Conv nodes, build_graph makes {len(rec.layers)}")
    for (kind, name, c, k, s), (w, b, strides) in zip(rec.layers, convs, strict=True):
        layer = raw.get_layer(name)
        kernel = w.transpose(2, 3, 1, 0)  # OIHW -> HWIO
        want = (k, k, kernel.shape[2], c)
        if tuple(layer.kernel.shape) != want or kernel.shape != want or strides != [s, s]:
            raise SystemExit(f"{name}: Keras {want} stride {s}, ONNX {kernel.shape} stride {strides}")
        if kind == "pred":
            layer.set_weights([kernel, b])
            continue
        layer.set_weights([kernel])
        bn = raw.get_layer(name + "_bn")
        one = np.ones(c, np.float32)
        # gamma, beta, moving_mean, moving_variance (Keras' order)
        bn.set_weights([one, b.astype(np.float32), np.zeros(c, np.float32), one - np.float32(bn.epsilon)])
    return len(rec.layers)


def test_inputs(n: int) -> np.ndarray:
    files = sorted((BUNDLED / "testimages").glob("*.jpg"))[:n]
    return np.stack([letterbox(cv2.imread(str(f)))[0] for f in files])


def check(exp: Any, variant: str, n: int) -> float:
    """Max |diff| of the rebuilt export model against the shipped float32 TFLite and ONNX files."""
    import onnxruntime as ort
    import tensorflow as tf

    it = tf.lite.Interpreter(model_path=str(BUNDLED / f"{variant}_float32.tflite"))
    it.allocate_tensors()
    sess = ort.InferenceSession(str(BUNDLED / f"{variant}.onnx"), providers=["CPUExecutionProvider"])
    worst = 0.0
    for img in test_inputs(n):
        x = img[None].astype(np.float32) / 255.0
        ref = exp(x, training=False).numpy()
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        tfl = it.get_tensor(it.get_output_details()[0]["index"])
        onx = sess.run(None, {sess.get_inputs()[0].name: x.transpose(0, 3, 1, 2)})[0]
        onx[:, :4] /= IMGSZ  # ONNX boxes are in input pixels
        d_tfl, d_onnx = float(np.abs(ref - tfl).max()), float(np.abs(ref - onx).max())
        worst = max(worst, d_tfl, d_onnx)
        print(f"keras vs float32 tflite {d_tfl:.2e}, vs onnx {d_onnx:.2e}")
    return worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--variant", default="shapes-s")
    ap.add_argument("--onnx", default=None, help="default: models/bundled/<variant>.onnx")
    ap.add_argument("--out", default=None, help="default: models/work/ckpt/<variant>.weights.h5")
    ap.add_argument("--check-images", type=int, default=6)
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    onnx_path = Path(a.onnx) if a.onnx else BUNDLED / f"{a.variant}.onnx"
    out = Path(a.out) if a.out else WORK / "ckpt" / f"{a.variant}.weights.h5"
    raw = A.build_raw_model(a.variant, IMGSZ, NUM_CLASSES)
    n = load_from_onnx(raw, a.variant, onnx_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    raw.save_weights(str(out))
    print(f"{onnx_path.name}: {n} convs -> {out}")
    if a.check_images:
        reloaded = A.build_raw_model(a.variant, IMGSZ, NUM_CLASSES)
        reloaded.load_weights(str(out))
        worst = check(A.build_export_model(reloaded, IMGSZ, NUM_CLASSES), a.variant, a.check_images)
        print(f"max |diff| {worst:.2e} (tolerance {a.tol:g})")
        if worst > a.tol:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
