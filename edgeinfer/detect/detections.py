"""Detections as a struct of arrays (boxes, scores, classes), validated on construction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True, eq=False)
class Detections:
    xyxy: np.ndarray  # (N, 4) float32, original-image pixels
    confidence: np.ndarray  # (N,) float32
    class_id: np.ndarray  # (N,) int64

    def __post_init__(self) -> None:
        n = len(self.confidence)
        if self.xyxy.shape != (n, 4):
            raise ValueError(f"xyxy must have shape ({n}, 4), got {self.xyxy.shape}")
        if self.class_id.shape != (n,):
            raise ValueError(f"class_id must have shape ({n},), got {self.class_id.shape}")

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.confidence)

    def select(self, mask: np.ndarray) -> Detections:
        return Detections(self.xyxy[mask], self.confidence[mask], self.class_id[mask])

    def to_json(self, labels: list[str]) -> list[dict[str, Any]]:
        """The contract's detection objects: label, class_id, score, box [x1, y1, x2, y2]."""
        return [
            {
                "label": label_of(labels, int(c)),
                "class_id": int(c),
                "score": round(s, 4),
                "box": [round(v, 1) for v in box],
            }
            # tolist(): Python floats once per array, not a numpy scalar per value
            for box, s, c in zip(
                self.xyxy.tolist(), self.confidence.tolist(), self.class_id.tolist(), strict=True
            )
        ]


def label_of(labels: list[str], class_id: int) -> str:
    return labels[class_id] if 0 <= class_id < len(labels) else f"class{class_id}"
