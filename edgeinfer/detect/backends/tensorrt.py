"""TensorRT (Jetson): a serialized .engine run with the TensorRT 10 tensor API and CUDA via cuda-python.

Buffers are allocated once for the largest batch the engine's optimisation profile allows; each run sets
the input shape, copies in, ``execute_async_v3``, copies out. An engine built for a fixed batch of 1 runs
image by image. Detector instances on TensorRT are execution contexts of one engine
(:meth:`TensorRTBackend.another_context`): the weights are on the GPU once, and each context has its own
CUDA stream and I/O buffers, so several batches can be on the GPU at a time. Build engines on the device that runs them: ``edgeinfer model build-engine model.onnx``.

Not exercised in this repository's CI (no TensorRT there); see tests/unit/test_tensorrt_fake.py for the
binding logic against a named fake of the two modules.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeinfer.detect.backends.base import InputLayout, TensorInfo
from edgeinfer.errors import BackendError, ModelError

if TYPE_CHECKING:
    from edgeinfer.detect.yolo import Layout

logger = logging.getLogger(__name__)


def _import() -> tuple[Any, Any]:
    try:
        import tensorrt as trt
    except ImportError:
        raise BackendError(
            "TensorRT is not installed: on a Jetson it comes with JetPack (python3-libnvinfer); "
            "elsewhere use the litert or onnxruntime backend"
        ) from None
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise BackendError("the TensorRT backend needs cuda-python: pip install cuda-python") from None
    return trt, cudart


def _check(result: Any) -> Any:
    """cuda-python returns (err, value...) tuples; raise on a non-zero error."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BackendError(f"CUDA error {int(err)}")
    return rest[0] if len(rest) == 1 else rest


class TensorRTBackend:
    def __init__(self, path: Path, *, threads: int, engine_of: TensorRTBackend | None = None) -> None:
        """``threads``: CPU-side only, unused. ``engine_of``: run that backend's engine (already on the GPU)
        in a context of this backend's own instead of loading ``path`` again."""
        trt, self._cudart = _import()
        self.name, self.version = "tensorrt", trt.__version__
        self._path = path
        self._trt_logger: Any
        self._engine: Any
        if engine_of is not None:
            self._trt_logger, self._engine = engine_of._trt_logger, engine_of._engine
        else:
            self._trt_logger = trt.Logger(trt.Logger.WARNING)
            self._engine = trt.Runtime(self._trt_logger).deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise ModelError(
                f"{path.name}: TensorRT could not deserialize it (built for another GPU or version?)"
            )
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise ModelError(f"{path.name}: expected one input tensor, got {len(inputs)}")
        self._input_name = inputs[0]
        self._output_names = [n for n in names if n != self._input_name]

        def info(name: str) -> TensorInfo:
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            return TensorInfo(name, tuple(int(d) for d in self._engine.get_tensor_shape(name)), dtype)

        self.input = info(self._input_name)
        self.outputs = [info(n) for n in self._output_names]
        self.metadata: dict[str, str] = {}
        if self.input.shape[0] == -1:
            self.max_batch = int(self._engine.get_tensor_profile_shape(self._input_name, 0)[2][0])
        else:
            self.max_batch = self.input.shape[0]
        self._stream = _check(self._cudart.cudaStreamCreate())
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        self._context.set_input_shape(self._input_name, (self.max_batch, *self.input.shape[1:]))
        for name in names:
            shape = self._context.get_tensor_shape(name)
            nbytes = (
                int(np.prod([max(d, 1) for d in shape]))
                * np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))).itemsize
            )
            self._buffers[name] = (_check(self._cudart.cudaMalloc(nbytes)), nbytes)
            self._context.set_tensor_address(name, self._buffers[name][0])

    def another_context(self) -> TensorRTBackend:
        """Another instance of this engine: its own execution context, stream and buffers. Closing either
        leaves the other running (the engine lives while a context refers to it)."""
        return TensorRTBackend(self._path, threads=0, engine_of=self)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        n = int(batch.shape[0])
        if n > self.max_batch:  # more frames than the engine takes at once: run in chunks
            parts = [self.run(batch[i : i + self.max_batch]) for i in range(0, n, self.max_batch)]
            return [np.concatenate([p[k] for p in parts]) for k in range(len(self.outputs))]
        cudart = self._cudart
        batch = np.ascontiguousarray(batch, dtype=self.input.dtype)
        self._context.set_input_shape(self._input_name, batch.shape)
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check(
            cudart.cudaMemcpyAsync(
                self._buffers[self._input_name][0], batch.ctypes.data, batch.nbytes, h2d, self._stream
            )
        )
        if not self._context.execute_async_v3(self._stream):
            raise BackendError("TensorRT execute_async_v3 failed")
        results = []
        for name, info in zip(self._output_names, self.outputs, strict=True):
            out = np.empty(tuple(self._context.get_tensor_shape(name)), dtype=info.dtype)
            _check(
                cudart.cudaMemcpyAsync(out.ctypes.data, self._buffers[name][0], out.nbytes, d2h, self._stream)
            )
            results.append(out)
        _check(cudart.cudaStreamSynchronize(self._stream))
        return results

    def normalized_boxes(self, out_layout: Layout, input_layout: InputLayout) -> bool:
        return False  # Engines built from Ultralytics' ONNX exports give boxes in input pixels.

    def close(self) -> None:
        for pointer, _ in self._buffers.values():
            self._cudart.cudaFree(pointer)
        self._buffers.clear()
        self._cudart.cudaStreamDestroy(self._stream)


def build_engine(onnx: Path, output: Path, *, fp16: bool, int8: bool, max_batch: int) -> None:
    """Build a serialized engine from an ONNX file, with a dynamic batch of 1..max_batch when the ONNX allows."""
    trt, _ = _import()
    if not onnx.is_file():
        raise ModelError(f"no such ONNX file: {onnx}")
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse(onnx.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"{onnx.name}: TensorRT could not parse it: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if int8:
        config.set_flag(trt.BuilderFlag.INT8)
    tensor = network.get_input(0)
    shape = tuple(tensor.shape)
    if shape[0] == -1:
        profile = builder.create_optimization_profile()
        rest = shape[1:]
        profile.set_shape(tensor.name, (1, *rest), (max(1, max_batch // 2), *rest), (max_batch, *rest))
        config.add_optimization_profile(profile)
    else:
        logger.warning(
            "%s has a fixed batch of %d: the engine will run batches image by image", onnx.name, shape[0]
        )
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT could not build an engine from {onnx.name}")
    output.write_bytes(bytes(serialized))
