"""Annotated copies of frames: boxes, labels and scores."""

from __future__ import annotations

import cv2
import numpy as np

from edgeinfer.detect.detections import Detections, label_of

_PALETTE = [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72)]


def annotate(image: np.ndarray, dets: Detections, labels: list[str]) -> np.ndarray:
    out = image.copy()
    for box, score, cls in zip(dets.xyxy, dets.confidence, dets.class_id, strict=True):
        colour = _PALETTE[int(cls) % len(_PALETTE)]
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        text = f"{label_of(labels, int(cls))} {float(score):.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        top = max(y1 - th - 4, 0)
        cv2.rectangle(out, (x1, top), (x1 + tw + 4, top + th + 4), colour, -1)
        cv2.putText(
            out, text, (x1 + 2, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA
        )
    return out
