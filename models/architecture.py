"""Small anchor-free YOLOv8-style detector (Keras), with the decode step built into the exported graph.

Backbone: conv-BN-ReLU6 with C2f blocks and SPPF; neck: FPN + PAN; decoupled box/class heads at strides
8/16/32. ReLU6 instead of SiLU: it fuses into the TFLite int8 conv kernels (no LOGISTIC+MUL per layer) and
its bounded range calibrates well, at a negligible accuracy cost on this task.

The network is written once against a tiny "ops" interface so that the same description builds the Keras
model (training, TFLite export) and the ONNX graph (models/onnx_export.py), with layer names shared.

Raw outputs: [B, N, 4] box logits and [B, N, C] class logits, N = 40*40 + 20*20 + 10*10 = 2100 at 320.
Decoded (export) output: [B, 4 + C, N], rows 0-3 = cx, cy, w, h normalised by the input size, rows 4.. =
per-class sigmoid scores (the Ultralytics YOLOv8 TFLite layout). Box distances: ltrb = sigmoid(raw) *
MAX_DIST_STRIDES * stride, measured from the anchor point (cell centre).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

STRIDES = (8, 16, 32)
MAX_DIST_STRIDES = 8.0  # ltrb distance limit per level, in strides
PRIOR = 0.01  # initial class probability


@dataclass(frozen=True)
class Variant:
    name: str
    widths: tuple[int, int, int, int, int]  # stem, s4, s8, s16, s32
    depths: tuple[int, int, int, int]  # C2f repeats at s4, s8, s16, s32
    head_box: int
    head_cls: int
    neck_depth: int = 1


VARIANTS = {
    # our small model: ~0.67 M params, ~0.68 GFLOPs at 320 (class branch twice the box branch's width)
    "shapes-s": Variant("shapes-s", (16, 24, 48, 64, 96), (1, 1, 1, 1), 24, 48),
    # YOLOv8n scale: ~3 M params (widths/depths of yolov8n, plain ltrb instead of DFL)
    "shapes-m": Variant("shapes-m", (16, 32, 64, 128, 256), (1, 2, 2, 1), 64, 64),
}


class Ops(Protocol):
    def conv(self, x: Any, c: int, k: int, s: int, name: str) -> Any: ...
    def pred(self, x: Any, c: int, bias: float, name: str) -> Any: ...
    def concat(self, xs: list[Any]) -> Any: ...
    def add(self, a: Any, b: Any) -> Any: ...
    def maxpool5(self, x: Any) -> Any: ...
    def up2(self, x: Any) -> Any: ...


class _Namer:
    def __init__(self) -> None:
        self.i = 0

    def __call__(self, kind: str) -> str:
        self.i += 1
        return f"{kind}{self.i:03d}"


def _c2f(ops: Ops, nm: _Namer, x: Any, c: int, n: int, shortcut: bool) -> Any:
    h = c // 2
    a = ops.conv(x, h, 1, 1, nm("conv"))
    b = ops.conv(x, h, 1, 1, nm("conv"))
    ys = [a, b]
    for _ in range(n):
        m = ops.conv(ys[-1], h, 3, 1, nm("conv"))
        m = ops.conv(m, h, 3, 1, nm("conv"))
        ys.append(ops.add(ys[-1], m) if shortcut else m)
    return ops.conv(ops.concat(ys), c, 1, 1, nm("conv"))


def _sppf(ops: Ops, nm: _Namer, x: Any, c: int) -> Any:
    h = c // 2
    y0 = ops.conv(x, h, 1, 1, nm("conv"))
    y1 = ops.maxpool5(y0)
    y2 = ops.maxpool5(y1)
    y3 = ops.maxpool5(y2)
    return ops.conv(ops.concat([y0, y1, y2, y3]), c, 1, 1, nm("conv"))


def build_graph(ops: Ops, x: Any, v: Variant, num_classes: int) -> list[tuple[Any, Any]]:
    """Build the network on input `x`; return [(box_raw, cls_raw)] per level (stride 8, 16, 32)."""
    nm = _Namer()
    w0, w1, w2, w3, w4 = v.widths
    d1, d2, d3, d4 = v.depths
    x = ops.conv(x, w0, 3, 2, nm("conv"))  # /2
    x = ops.conv(x, w1, 3, 2, nm("conv"))  # /4
    x = _c2f(ops, nm, x, w1, d1, True)
    x = ops.conv(x, w2, 3, 2, nm("conv"))  # /8
    p3 = _c2f(ops, nm, x, w2, d2, True)
    x = ops.conv(p3, w3, 3, 2, nm("conv"))  # /16
    p4 = _c2f(ops, nm, x, w3, d3, True)
    x = ops.conv(p4, w4, 3, 2, nm("conv"))  # /32
    x = _c2f(ops, nm, x, w4, d4, True)
    p5 = _sppf(ops, nm, x, w4)
    # FPN (top-down)
    t4 = _c2f(ops, nm, ops.concat([ops.up2(p5), p4]), w3, v.neck_depth, False)
    n3 = _c2f(ops, nm, ops.concat([ops.up2(t4), p3]), w2, v.neck_depth, False)
    # PAN (bottom-up)
    n4 = _c2f(ops, nm, ops.concat([ops.conv(n3, w2, 3, 2, nm("conv")), t4]), w3, v.neck_depth, False)
    n5 = _c2f(ops, nm, ops.concat([ops.conv(n4, w3, 3, 2, nm("conv")), p5]), w4, v.neck_depth, False)
    outs = []
    cls_bias = -math.log((1 - PRIOR) / PRIOR)
    for feat in (n3, n4, n5):
        b = ops.conv(feat, v.head_box, 3, 1, nm("conv"))
        b = ops.conv(b, v.head_box, 3, 1, nm("conv"))
        b = ops.pred(b, 4, 0.0, nm("pred"))
        c = ops.conv(feat, v.head_cls, 3, 1, nm("conv"))
        c = ops.conv(c, v.head_cls, 3, 1, nm("conv"))
        c = ops.pred(c, num_classes, cls_bias, nm("pred"))
        outs.append((b, c))
    return outs


def anchor_grid(imgsz: int = 320) -> tuple[np.ndarray, np.ndarray]:
    """Anchor points (N,2) in pixels (cell centres) and their strides (N,), in output order."""
    pts, strides = [], []
    for s in STRIDES:
        n = imgsz // s
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        pts.append(np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32) * s + s / 2)
        strides.append(np.full(n * n, s, np.float32))
    return np.concatenate(pts), np.concatenate(strides)


# ----------------------------------------------------------------------------------------------- Keras


def _keras() -> Any:
    import keras

    return keras


class KerasOps:
    def __init__(self) -> None:
        self.k = _keras()
        self.layers = self.k.layers

    def conv(self, x: Any, c: int, k: int, s: int, name: str) -> Any:
        L = self.layers
        x = L.Conv2D(c, k, s, padding="same", use_bias=False, name=name)(x)
        x = L.BatchNormalization(momentum=0.97, epsilon=1e-3, name=name + "_bn")(x)
        return L.ReLU(max_value=6.0, name=name + "_act")(x)

    def pred(self, x: Any, c: int, bias: float, name: str) -> Any:
        init = self.k.initializers.Constant(bias)
        return self.layers.Conv2D(c, 1, 1, use_bias=True, bias_initializer=init, name=name)(x)

    def concat(self, xs: list[Any]) -> Any:
        return self.layers.Concatenate(axis=-1)(xs)

    def add(self, a: Any, b: Any) -> Any:
        return self.layers.Add()([a, b])

    def maxpool5(self, x: Any) -> Any:
        return self.layers.MaxPooling2D(5, 1, padding="same")(x)

    def up2(self, x: Any) -> Any:
        return self.layers.UpSampling2D(2, interpolation="nearest")(x)


def build_raw_model(variant: str | Variant = "shapes-s", imgsz: int = 320, num_classes: int = 3) -> Any:
    """Training model: float RGB [0,1] NHWC in -> [B, N, 4 + C] raw logits (box first)."""
    k = _keras()
    v = VARIANTS[variant] if isinstance(variant, str) else variant
    inp = k.Input((imgsz, imgsz, 3), name="images")
    outs = build_graph(KerasOps(), inp, v, num_classes)
    flat = []
    for s, (b, c) in zip(STRIDES, outs, strict=True):
        level = k.layers.Concatenate(axis=-1, name=_head_name(s))([b, c])
        flat.append(k.layers.Reshape((-1, 4 + num_classes))(level))
    out = k.layers.Concatenate(axis=1, name="raw")(flat)
    return k.Model(inp, out, name=v.name)


def decode_constants(imgsz: int = 320) -> tuple[np.ndarray, np.ndarray]:
    """(anchors normalised (N,2), max ltrb distance normalised (N,1)) used by the decode step."""
    pts, strides = anchor_grid(imgsz)
    return pts / imgsz, (strides * MAX_DIST_STRIDES / imgsz)[:, None]


def _head_name(stride: int) -> str:
    """Name of the layer joining one level's box and class logits in the raw model (e.g. head_p3)."""
    return f"head_p{round(math.log2(stride))}"


def build_export_model(raw_model: Any, imgsz: int = 320, num_classes: int = 3) -> Any:
    """Wrap the raw model with the decode step: -> [B, 4 + C, N] (cx, cy, w, h normalised; sigmoid scores).

    The decode runs per level on the heads' own box and class tensors and only the final, already decoded
    values are concatenated. In a full-integer model every tensor has one scale: decoding from the raw
    concatenation would quantize the box logits with the scale of the much wider class-logit range (about
    3 px of error per coordinate at stride 8), while per level each tensor gets a scale fitted to its range.
    """
    k = _keras()
    from keras import ops as K

    heads = k.Model(raw_model.inputs, [t for s in STRIDES for t in raw_model.get_layer(_head_name(s)).input])

    class DecodeLevel(k.layers.Layer):
        def __init__(self, anchors: np.ndarray, maxd: float, **kw: Any) -> None:
            super().__init__(**kw)
            self.anchors, self.maxd = anchors, maxd

        def call(self, box: Any, cls: Any) -> Any:
            n = self.anchors.shape[0]
            d = K.sigmoid(K.reshape(box, (-1, n, 4))) * self.maxd
            lt, rb = d[..., :2], d[..., 2:]
            cxcy = K.convert_to_tensor(self.anchors) + 0.5 * (rb - lt)
            scores = K.sigmoid(K.reshape(cls, (-1, n, num_classes)))
            return K.concatenate([cxcy, lt + rb, scores], axis=-1)

    anchors, maxd = decode_constants(imgsz)
    inp = k.Input((imgsz, imgsz, 3), name="images", batch_size=1)
    outs = heads(inp)
    levels, start = [], 0
    for i, s in enumerate(STRIDES):
        n = (imgsz // s) ** 2
        level = DecodeLevel(
            anchors[start : start + n], float(maxd[start, 0]), name=f"decode_p{round(math.log2(s))}"
        )
        levels.append(level(outs[2 * i], outs[2 * i + 1]))
        start += n
    out = k.layers.Permute((2, 1), name="decode")(k.layers.Concatenate(axis=1)(levels))
    return k.Model(inp, out, name=raw_model.name + "_export")


def count_flops(model: Any) -> float:
    """GFLOPs (2 x multiply-adds) of the conv layers of a Keras model for one image."""
    macs = 0
    for layer in model.layers:
        if isinstance(layer, _keras().Model):
            macs += count_flops(layer) * 1e9 / 2
            continue
        if layer.__class__.__name__ == "Conv2D":
            kh, kw, cin, cout = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            macs += kh * kw * cin * cout * h * w
    return 2 * macs / 1e9
