"""The TensorRT backend's binding logic against FakeTensorRT / FakeCudart.

TensorRT and CUDA can't be reached on these machines. These fakes stand in for the two modules at that
seam only: an "engine" with a dynamic batch whose output row 0 holds each image's input mean, and a CUDA
runtime whose device memory is host memory. They check what the backend does with shapes, buffers,
chunking and copies, not TensorRT itself.
"""

import ctypes
import sys
import types
from enum import Enum

import numpy as np
import pytest

from edgeinfer.detect.backends.tensorrt import TensorRTBackend

IN_SHAPE = (-1, 3, 8, 8)
OUT_SHAPE = (-1, 7, 5)
MAX_BATCH = 4


class _Mode(Enum):
    INPUT = 0
    OUTPUT = 1


class FakeCudart(types.ModuleType):
    class cudaMemcpyKind(Enum):
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    def __init__(self):
        super().__init__("cudart")
        self.memory = {}

    def cudaStreamCreate(self):
        return (0, 1)

    def cudaMalloc(self, nbytes):
        buf = ctypes.create_string_buffer(nbytes)
        self.memory[ctypes.addressof(buf)] = buf
        return (0, ctypes.addressof(buf))

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):
        ctypes.memmove(dst, src, nbytes)
        return (0,)

    def cudaStreamSynchronize(self, stream):
        return (0,)

    def cudaFree(self, pointer):
        self.memory.pop(pointer)
        return (0,)

    def cudaStreamDestroy(self, stream):
        return (0,)


class FakeContext:
    def __init__(self):
        self.shapes, self.addresses, self.runs = {}, {}, []

    def set_input_shape(self, name, shape):
        assert shape[0] <= MAX_BATCH, "the backend must never exceed the profile's max batch"
        self.shapes["images"] = tuple(shape)
        self.shapes["output0"] = (shape[0], *OUT_SHAPE[1:])

    def get_tensor_shape(self, name):
        return self.shapes[name]

    def set_tensor_address(self, name, pointer):
        self.addresses[name] = pointer

    def execute_async_v3(self, stream):
        n = self.shapes["images"][0]
        images = np.ctypeslib.as_array(
            (ctypes.c_float * int(np.prod(self.shapes["images"]))).from_address(self.addresses["images"])
        ).reshape(self.shapes["images"])
        out = np.ctypeslib.as_array(
            (ctypes.c_float * int(np.prod(self.shapes["output0"]))).from_address(self.addresses["output0"])
        ).reshape(self.shapes["output0"])
        out[:] = 0
        out[:, 0, 0] = images.reshape(n, -1).mean(axis=1)
        self.runs.append(n)
        return True


class FakeEngine:
    num_io_tensors = 2

    def __init__(self):
        self.context = FakeContext()

    def create_execution_context(self):
        return self.context

    def get_tensor_name(self, i):
        return ["images", "output0"][i]

    def get_tensor_mode(self, name):
        return _Mode.INPUT if name == "images" else _Mode.OUTPUT

    def get_tensor_dtype(self, name):
        return "float32"

    def get_tensor_shape(self, name):
        return IN_SHAPE if name == "images" else OUT_SHAPE

    def get_tensor_profile_shape(self, name, profile):
        return ((1, *IN_SHAPE[1:]), (2, *IN_SHAPE[1:]), (MAX_BATCH, *IN_SHAPE[1:]))


def fake_tensorrt():
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.0-fake"
    trt.TensorIOMode = _Mode
    trt.nptype = np.dtype

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return FakeEngine() if data == b"engine" else None

    trt.Logger, trt.Runtime = Logger, Runtime
    return trt


@pytest.fixture
def backend(tmp_path, monkeypatch):
    cudart = FakeCudart()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt())
    cuda = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)
    path = tmp_path / "model.engine"
    path.write_bytes(b"engine")
    b = TensorRTBackend(path, threads=2)
    yield b, cudart
    b.close()


def test_reads_tensors_and_profile(backend):
    b, _ = backend
    assert b.input.shape == IN_SHAPE and b.outputs[0].shape == OUT_SHAPE
    assert b.max_batch == MAX_BATCH and b.name == "tensorrt"
    assert b.normalized_boxes("yolov8", "NCHW") is False  # engines from ONNX exports: input pixels


@pytest.mark.parametrize("n", [1, 3, 4, 7])
def test_runs_any_batch_size_in_chunks_of_the_profile_max(backend, n):
    b, _ = backend
    batch = np.stack([np.full(IN_SHAPE[1:], i + 1, np.float32) for i in range(n)])
    (out,) = b.run(batch)
    assert out.shape == (n, *OUT_SHAPE[1:])
    np.testing.assert_allclose(out[:, 0, 0], np.arange(1, n + 1))


def test_close_frees_device_memory(backend):
    b, cudart = backend
    assert len(cudart.memory) == 2
    b.close()
    assert cudart.memory == {}


def test_undeserializable_engine_is_a_model_error(tmp_path, monkeypatch, backend):
    from edgeinfer.errors import ModelError

    bad = tmp_path / "other.engine"
    bad.write_bytes(b"built for another GPU")
    with pytest.raises(ModelError, match="could not deserialize"):
        TensorRTBackend(bad, threads=1)
