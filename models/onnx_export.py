"""Write the ONNX sibling directly with the onnx helper API from the trained Keras weights.

tf2onnx does not support TF 2.21 / Keras 3, so the graph is rebuilt from the same network description
(architecture.build_graph) with an ONNX "ops" backend: BatchNorm is folded into the convs, ReLU6 becomes
Clip(0, 6), TF "same" padding is reproduced with explicit pads. Input: float32 NCHW [1, 3, 320, 320] RGB in
[0, 1] (the Ultralytics ONNX convention); output: [1, 4 + C, N] like the TFLite files, except that
boxes cx, cy, w, h are in input pixels as in Ultralytics ONNX exports (TFLite: normalised to [0, 1]).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import architecture as A
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class OnnxOps:
    """Builds ONNX nodes; tensors are (name, channels, spatial size) tuples."""

    def __init__(self, model: Any) -> None:
        self.layers = {layer.name: layer for layer in model.layers}
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def _name(self, base: str) -> str:
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, arr: np.ndarray, base: str = "c") -> str:
        name = self._name(base)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs: Any) -> str:
        out = self._name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    def _conv(
        self, x: tuple[str, int, int], w: np.ndarray, b: np.ndarray, k: int, s: int
    ) -> tuple[str, int, int]:
        name, _, size = x
        p0, p1 = _same_pads(size, k, s)
        out = self.node(
            "Conv",
            [name, self.const(w.astype(np.float32), "w"), self.const(b.astype(np.float32), "b")],
            kernel_shape=[k, k],
            strides=[s, s],
            pads=[p0, p0, p1, p1],
        )
        return out, w.shape[0], -(-size // s)

    def conv(self, x: Any, c: int, k: int, s: int, name: str) -> Any:
        kernel = np.asarray(self.layers[name].kernel)  # HWIO
        bn = self.layers[name + "_bn"]
        gamma, beta = np.asarray(bn.gamma), np.asarray(bn.beta)
        mean, var = np.asarray(bn.moving_mean), np.asarray(bn.moving_variance)
        scale = gamma / np.sqrt(var + bn.epsilon)
        w = kernel.transpose(3, 2, 0, 1) * scale[:, None, None, None]
        b = beta - mean * scale
        y, ch, size = self._conv(x, w, b, k, s)
        lo, hi = self.const(np.array(0.0, np.float32)), self.const(np.array(6.0, np.float32))
        return self.node("Clip", [y, lo, hi]), ch, size

    def pred(self, x: Any, c: int, bias: float, name: str) -> Any:
        layer = self.layers[name]
        w = np.asarray(layer.kernel).transpose(3, 2, 0, 1)
        return self._conv(x, w, np.asarray(layer.bias), 1, 1)

    def concat(self, xs: list[Any]) -> Any:
        return self.node("Concat", [x[0] for x in xs], axis=1), sum(x[1] for x in xs), xs[0][2]

    def add(self, a: Any, b: Any) -> Any:
        return self.node("Add", [a[0], b[0]]), a[1], a[2]

    def maxpool5(self, x: Any) -> Any:
        return (
            self.node("MaxPool", [x[0]], kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2]),
            x[1],
            x[2],
        )

    def up2(self, x: Any) -> Any:
        scales = self.const(np.array([1, 1, 2, 2], np.float32))
        out = self.node(
            "Resize",
            [x[0], "", scales],
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        )
        return out, x[1], x[2] * 2


def export(raw_model: Any, variant: str, path: Path, meta: dict[str, Any], imgsz: int, nc: int) -> None:
    """Write `path` (ONNX opset 17) from the trained raw Keras model, decode included."""
    ops = OnnxOps(raw_model)
    outs = A.build_graph(ops, ("images", 3, imgsz), A.VARIANTS[variant], nc)
    flat = []
    for b, c in outs:
        cat = ops.node("Concat", [b[0], c[0]], axis=1)
        flat.append(ops.node("Reshape", [cat, ops.const(np.array([1, 4 + nc, -1], np.int64))]))
    raw = ops.node("Concat", flat, axis=2)  # [1, 4 + nc, N]
    anchors, maxd = A.decode_constants(imgsz)
    # Ultralytics ONNX exports give boxes in input pixels (only TFLite normalises): scale the constants.
    anchors, maxd = anchors * imgsz, maxd * imgsz

    def rows(x: str, lo: int, hi: int) -> str:
        return ops.node(
            "Slice",
            [
                x,
                ops.const(np.array([lo], np.int64)),
                ops.const(np.array([hi], np.int64)),
                ops.const(np.array([1], np.int64)),  # axes
                ops.const(np.array([1], np.int64)),  # steps
            ],
        )

    d = ops.node("Mul", [ops.node("Sigmoid", [rows(raw, 0, 4)]), ops.const(maxd.T[None].astype(np.float32))])
    lt, rb = rows(d, 0, 2), rows(d, 2, 4)
    half = ops.const(np.array(0.5, np.float32))
    cxcy = ops.node(
        "Add",
        [ops.const(anchors.T[None].astype(np.float32)), ops.node("Mul", [ops.node("Sub", [rb, lt]), half])],
    )
    wh = ops.node("Add", [lt, rb])
    scores = ops.node("Sigmoid", [rows(raw, 4, 4 + nc)])
    ops.nodes.append(helper.make_node("Concat", [cxcy, wh, scores], ["output0"], name="output0", axis=1))
    n = anchors.shape[0]
    graph = helper.make_graph(
        ops.nodes,
        f"{variant}",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, imgsz, imgsz])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4 + nc, n])],
        ops.inits,
    )
    model = helper.make_model(graph, producer_name="edgeinfer", opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in meta.items():
        value = {int(i): name for i, name in v.items()} if k == "names" else v
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=str(value)))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
