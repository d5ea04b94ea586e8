"""Class-aware non-maximum suppression over one image's candidate boxes (OpenCV's batched NMS)."""

from __future__ import annotations

import cv2
import numpy as np

MAX_CANDIDATES = 30000  # NMS input cap, as Ultralytics' max_nms


def nms(xyxy: np.ndarray, score: np.ndarray, class_id: np.ndarray, iou: float, max_det: int) -> np.ndarray:
    """Indices of the kept boxes, best first, at most max_det."""
    if len(score) == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-score)[:MAX_CANDIDATES]
    ranked = score[order]
    xywh = xyxy[order]  # fancy indexing: a copy
    xywh[:, 2:] -= xywh[:, :2]
    # Python lists, not arrays: OpenCV's binding converts lists to its vectors several times faster than it
    # converts numpy arrays (benchmarks/RESULTS.md, hot-path micro-benchmarks). float32 values become
    # Python floats exactly, so OpenCV sees the same numbers.
    kept = cv2.dnn.NMSBoxesBatched(
        xywh.astype(np.float32, copy=False).tolist(),
        ranked.astype(np.float32, copy=False).tolist(),
        class_id[order].astype(np.int32).tolist(),
        0.0,
        iou,
    )
    picked = np.asarray(kept, dtype=np.int64).reshape(-1)
    picked = picked[np.argsort(-ranked[picked], kind="stable")][:max_det]
    return order[picked]
