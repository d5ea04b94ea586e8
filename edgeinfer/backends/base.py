"""The detector-backend seam: a runtime that runs a batch of prepared input tensors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # -1 for dynamic dimensions
    dtype: np.dtype
    scale: float = 0.0  # 0: not quantized
    zero_point: int = 0


class Backend(Protocol):
    """One model loaded in one runtime. Not thread-safe: the caller owns a single worker thread for it."""

    name: str  # "litert", "tflite_runtime", "onnxruntime", "tensorrt"
    version: str
    input: TensorInfo
    outputs: list[TensorInfo]
    metadata: dict[str, str]  # raw model metadata (key -> string value), empty if none

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run a batch shaped like ``input`` with any batch size >= 1; returns one array per output."""
        ...

    def close(self) -> None: ...
