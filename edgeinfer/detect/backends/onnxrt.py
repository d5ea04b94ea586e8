"""ONNX Runtime (x86 gateways), CPU execution provider."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeinfer.detect.backends.base import InputLayout, TensorInfo, run_image_by_image
from edgeinfer.errors import BackendError, ModelError

if TYPE_CHECKING:
    from edgeinfer.detect.yolo import Layout

_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
}


def _shape(dims: list[object]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) else -1 for d in dims)


class OnnxRuntimeBackend:
    def __init__(self, path: Path, *, threads: int) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendError("ONNX Runtime is not installed: pip install 'edgeinfer[onnx]'") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: ONNX Runtime's default (one per core)
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{path.name}: ONNX Runtime could not load it: {exc}") from exc
        self.name, self.version = "onnxruntime", ort.__version__
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ModelError(f"{path.name}: expected one input tensor, got {len(inputs)}")
        self.input = TensorInfo(
            inputs[0].name, _shape(inputs[0].shape), np.dtype(_DTYPES.get(inputs[0].type, np.float32))
        )
        self.outputs = [
            TensorInfo(o.name, _shape(o.shape), np.dtype(_DTYPES.get(o.type, np.float32)))
            for o in self._session.get_outputs()
        ]
        self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        self._fixed_batch = self.input.shape[0] if self.input.shape[0] > 0 else None

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        if self._fixed_batch is None or self._fixed_batch == batch.shape[0]:
            return list(self._session.run(None, {self.input.name: batch}))
        # A model exported with a fixed batch of 1: run image by image and stack.
        return run_image_by_image(lambda one: list(self._session.run(None, {self.input.name: one})), batch)

    def normalized_boxes(self, out_layout: Layout, input_layout: InputLayout) -> bool:
        return False  # Ultralytics' ONNX exports give boxes in input pixels.

    def close(self) -> None:
        del self._session
