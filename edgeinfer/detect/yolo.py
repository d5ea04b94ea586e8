"""YOLO output layouts: recognise them from the tensor shape, then decode to boxes in original pixels.

Layouts (shapes without the batch dimension):

- ``yolov8``: ``(4 + nc, N)``, rows cx, cy, w, h, then one score per class (YOLOv8/YOLO11, Ultralytics);
- ``yolov8t``: the same transposed, ``(N, 4 + nc)``;
- ``yolov5``: ``(N, 5 + nc)``: cx, cy, w, h, objectness, class scores;
- ``end2end``: ``(K, 6)``: x1, y1, x2, y2, score, class, already NMS-ed (YOLOv10 / YOLO26 style).

N is the number of anchor points: sum over strides 8/16/32 of (H/s)*(W/s) (YOLOv5: three anchors each).
Boxes may be normalised to [0, 1] (Ultralytics' TFLite exports) or in input pixels (ONNX, TensorRT).

Scores are filtered before anything else; for integer outputs the threshold is turned into its quantized
value and only the survivors are dequantized (the hot path touches int8 once).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from edgeinfer.detect.detections import Detections
from edgeinfer.detect.nms import nms
from edgeinfer.detect.preprocess import Letterbox, dequantize, quantize_threshold
from edgeinfer.errors import ModelError

Layout = Literal["yolov8", "yolov8t", "yolov5", "end2end"]
LAYOUTS: tuple[Layout, ...] = ("yolov8", "yolov8t", "yolov5", "end2end")


def anchor_count(in_h: int, in_w: int, strides: tuple[int, ...] = (8, 16, 32)) -> int:
    return sum((in_h // s) * (in_w // s) for s in strides)


def recognise_layout(
    shape: tuple[int, ...], in_h: int, in_w: int, num_names: int | None = None
) -> tuple[Layout, int]:
    """Return (layout, num_classes) for an output tensor shape, or raise ModelError saying why not."""
    dims = tuple(int(d) for d in shape)
    if len(dims) == 3:
        if dims[0] != 1 and dims[0] != -1:
            raise ModelError(f"output shape {dims}: expected batch 1 in the first dimension")
        dims = dims[1:]
    if len(dims) != 2:
        raise ModelError(f"output shape {shape}: expected [1, rows, cols]")
    rows, cols = dims
    n8 = anchor_count(in_h, in_w)
    candidates: list[tuple[Layout, int]] = []
    if cols == n8 and rows > 4:
        candidates.append(("yolov8", rows - 4))
    if rows == n8 and cols > 4:
        candidates.append(("yolov8t", cols - 4))
    if rows == 3 * n8 and cols > 5:
        candidates.append(("yolov5", cols - 5))
    if cols == 6 and rows not in (n8, 3 * n8):
        candidates.append(("end2end", num_names or 0))
    if not candidates and num_names:
        # Unusual strides or input sizes: fall back on the class count from the metadata.
        if rows == 4 + num_names and cols > rows:
            candidates.append(("yolov8", num_names))
        elif cols == 4 + num_names and rows > cols:
            candidates.append(("yolov8t", num_names))
        elif cols == 5 + num_names and rows > cols:
            candidates.append(("yolov5", num_names))
    if num_names:
        exact = [c for c in candidates if c[1] == num_names or c[0] == "end2end"]
        candidates = exact or candidates
    if not candidates:
        raise ModelError(
            f"output shape {shape} is not a YOLO layout I know for a {in_h}x{in_w} input "
            f"(yolov8 [1, 4+nc, {n8}], yolov5 [1, {3 * n8}, 5+nc], end2end [1, K, 6]); "
            "set detector.layout to force one"
        )
    return candidates[0]


def layout_classes(layout: Layout, shape: tuple[int, ...], num_names: int | None) -> int:
    rows, cols = (int(d) for d in shape[-2:])
    return {"yolov8": rows - 4, "yolov8t": cols - 4, "yolov5": cols - 5, "end2end": num_names or 0}[layout]


@dataclass(frozen=True, slots=True)
class OutputQuant:
    dtype: np.dtype
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale > 0 and bool(np.issubdtype(self.dtype, np.integer))


class YoloDecoder:
    """Decodes one image's raw output (batch dimension removed) into :class:`Detections`."""

    def __init__(
        self,
        layout: Layout,
        quant: OutputQuant,
        *,
        input_hw: tuple[int, int],
        normalized: bool,
        conf: float,
        iou: float,
        max_det: int,
    ) -> None:
        self.layout, self.quant = layout, quant
        self.conf, self.iou, self.max_det = conf, iou, max_det
        in_h, in_w = input_hw
        self._box_scale = np.array([in_w, in_h, in_w, in_h], np.float32) if normalized else None
        # The score cut in the output's own domain (int8/uint8 or float).
        self._cut: float | int = (
            quantize_threshold(conf, quant.scale, quant.zero_point, quant.dtype) if quant.quantized else conf
        )

    def decode(self, raw: np.ndarray, box: Letterbox) -> Detections:
        if self.layout == "end2end":
            return self._decode_end2end(raw, box)
        table = raw.T if self.layout in ("yolov8t", "yolov5") else raw  # channel-major view, no copy
        if self.layout == "yolov5":
            keep = np.flatnonzero(table[4] >= self._cut)  # score = obj * cls <= obj: obj must pass too
            sub = self._dequantize(table[:, keep])
            cls_scores = sub[5:] * sub[4]
        else:
            keep = np.flatnonzero(table[4:].max(axis=0) >= self._cut)
            sub = self._dequantize(table[:, keep])
            cls_scores = sub[4:]
        if keep.size == 0:
            return Detections.empty()
        class_id = cls_scores.argmax(axis=0)
        score = cls_scores[class_id, np.arange(cls_scores.shape[1])]
        ok = score >= self.conf - 1e-6  # the quantized cut already decided; allow float rounding
        xywh, score, class_id = sub[:4, ok].T, score[ok], class_id[ok]
        if self._box_scale is not None:
            xywh = xywh * self._box_scale
        xyxy = np.empty_like(xywh)
        xyxy[:, :2] = xywh[:, :2] - xywh[:, 2:] / 2
        xyxy[:, 2:] = xywh[:, :2] + xywh[:, 2:] / 2
        picked = nms(xyxy, score, class_id, self.iou, self.max_det)
        return Detections(box.to_original(xyxy[picked]), score[picked], class_id[picked].astype(np.int64))

    def _decode_end2end(self, raw: np.ndarray, box: Letterbox) -> Detections:
        keep = np.flatnonzero(raw[:, 4] >= self._cut)[: self.max_det]
        sub = self._dequantize(raw[keep])
        xyxy = sub[:, :4] if self._box_scale is None else sub[:, :4] * self._box_scale
        return Detections(box.to_original(xyxy), sub[:, 4].copy(), np.rint(sub[:, 5]).astype(np.int64))

    def _dequantize(self, values: np.ndarray) -> np.ndarray:
        return dequantize(values, self.quant.scale, self.quant.zero_point)
