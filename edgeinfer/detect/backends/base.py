"""The detector-backend seam: a runtime that runs a batch of prepared input tensors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

if TYPE_CHECKING:
    from edgeinfer.detect.yolo import Layout

InputLayout = Literal["NHWC", "NCHW"]


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
        """Run a batch shaped like ``input`` with any batch size >= 1; returns one array per output.

        The runtime is done with ``batch`` when this returns (the detector reuses its memory afterwards)."""
        ...

    def normalized_boxes(self, out_layout: Layout, input_layout: InputLayout) -> bool:
        """Whether this runtime's exports give boxes normalised to [0, 1] (else input pixels), for
        ``detector.boxes: auto``."""
        ...

    def close(self) -> None: ...


def run_image_by_image(run: Callable[[np.ndarray], list[np.ndarray]], batch: np.ndarray) -> list[np.ndarray]:
    """Run a batch one image at a time and stack the outputs (for exports whose graph fixes the batch at 1)."""
    parts = [run(batch[i : i + 1]) for i in range(batch.shape[0])]
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]
