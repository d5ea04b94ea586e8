"""LiteRT (ai-edge-litert), or tflite_runtime on older images. XNNPACK is the default CPU delegate."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeinfer.detect.backends.base import InputLayout, TensorInfo, run_image_by_image
from edgeinfer.detect.modelmeta import read_appended_metadata
from edgeinfer.errors import BackendError, ModelError

if TYPE_CHECKING:
    from edgeinfer.detect.yolo import Layout

logger = logging.getLogger(__name__)


def _import_interpreter() -> tuple[Any, str, str]:
    try:
        from ai_edge_litert import __version__ as version
        from ai_edge_litert import interpreter as litert
    except ImportError:
        pass
    else:
        return litert.Interpreter, "litert", version
    try:
        from tflite_runtime import __version__ as version
        from tflite_runtime import interpreter as tflite
    except ImportError:
        raise BackendError(
            "no TFLite runtime: install ai-edge-litert (pip install ai-edge-litert), "
            "or tflite-runtime on older images (it needs numpy<2)"
        ) from None
    return tflite.Interpreter, "tflite_runtime", version


def _info(detail: dict[str, Any]) -> TensorInfo:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    shape = tuple(int(d) for d in detail.get("shape_signature", detail["shape"]))
    return TensorInfo(detail["name"], shape, np.dtype(detail["dtype"]), float(scale), int(zero_point))


class LiteRTBackend:
    """One interpreter per batch size in use, created on first use.

    Resizing one interpreter's input re-plans its memory and re-applies XNNPACK on every change of batch
    size, which costs more than the inference of a small model; with dynamic batching sizes change often.
    """

    def __init__(self, path: Path, *, threads: int) -> None:
        self._interpreter_cls, self.name, self.version = _import_interpreter()
        self._path, self._threads = path, threads
        # batch size -> (interpreter, input index, output indexes)
        self._by_batch: dict[int, tuple[Any, int, list[int]]] = {}
        self._no_batch: set[int] = set()
        first = self._interpreter(1)[0]
        if len(first.get_input_details()) != 1:
            raise ModelError(f"{path.name}: expected one input tensor, got {len(first.get_input_details())}")
        self.input = _info(first.get_input_details()[0])
        self.outputs = [_info(d) for d in first.get_output_details()]
        self.metadata = read_appended_metadata(path)

    def _interpreter(self, batch: int) -> tuple[Any, int, list[int]]:
        cached = self._by_batch.get(batch)
        if cached is not None:
            return cached
        try:
            # threads 0: the runtime's own default, as tutorials construct it (edgeinfer bench's naive loop)
            threads = {"num_threads": self._threads} if self._threads > 0 else {}
            interpreter = self._interpreter_cls(model_path=str(self._path), **threads)
            if batch != 1 or interpreter.get_input_details()[0]["shape"][0] != 1:
                shape = list(interpreter.get_input_details()[0]["shape"])
                shape[0] = batch
                interpreter.resize_tensor_input(
                    interpreter.get_input_details()[0]["index"], shape, strict=False
                )
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{self._path.name}: the TFLite runtime could not load it: {exc}") from exc
        entry = (
            interpreter,
            interpreter.get_input_details()[0]["index"],
            [d["index"] for d in interpreter.get_output_details()],
        )
        self._by_batch[batch] = entry
        logger.debug("LiteRT interpreter ready for batch %d", batch)
        return entry

    def _batch_ok(self, batch: int) -> bool:
        """Whether an interpreter resized to this batch works and outputs that batch (fixed-batch graphs don't)."""
        if batch == 1:
            return True
        if batch not in self._no_batch:
            try:
                interpreter = self._interpreter(batch)[0]
            except ModelError:
                self._no_batch.add(batch)
            else:
                if any(int(d["shape"][0]) != batch for d in interpreter.get_output_details()):
                    self._no_batch.add(batch)
                    self._by_batch.pop(batch, None)
        return batch not in self._no_batch

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        if not self._batch_ok(int(batch.shape[0])):
            return run_image_by_image(self.run, batch)
        interpreter, input_index, output_indexes = self._interpreter(int(batch.shape[0]))
        interpreter.set_tensor(input_index, batch)
        interpreter.invoke()  # releases the GIL
        return [interpreter.get_tensor(i) for i in output_indexes]

    def normalized_boxes(self, out_layout: Layout, input_layout: InputLayout) -> bool:
        # Ultralytics normalises boxes to [0, 1] in its TFLite exports, except litert-torch's (NCHW) end2end
        # output, which is post-NMS input pixels; onnx2tf's (NHWC) normalises even those.
        return not (out_layout == "end2end" and input_layout == "NCHW")

    def close(self) -> None:
        self._by_batch.clear()
