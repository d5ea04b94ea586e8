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
    def __init__(self, engine):
        self.engine = engine
        self.shapes, self.addresses, self.runs = {}, {}, []

    def set_input_shape(self, name, shape):
        assert shape[0] <= MAX_BATCH, "the backend must never exceed the profile's max batch"
        self.shapes["images"] = tuple(shape)
        self.shapes["output0"] = (shape[0], *self.engine.out_shape[1:])

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
    """``in_shape`` / ``out_shape``: the tensors' shapes with a dynamic batch (-1)."""

    num_io_tensors = 2

    def __init__(self, in_shape=IN_SHAPE, out_shape=OUT_SHAPE):
        self.in_shape, self.out_shape = in_shape, out_shape
        self.contexts = []

    def create_execution_context(self):
        self.contexts.append(FakeContext(self))
        return self.contexts[-1]

    def get_tensor_name(self, i):
        return ["images", "output0"][i]

    def get_tensor_mode(self, name):
        return _Mode.INPUT if name == "images" else _Mode.OUTPUT

    def get_tensor_dtype(self, name):
        return "float32"

    def get_tensor_shape(self, name):
        return self.in_shape if name == "images" else self.out_shape

    def get_tensor_profile_shape(self, name, profile):
        return tuple((n, *self.in_shape[1:]) for n in (1, 2, MAX_BATCH))


# A YOLOv8-shaped engine: a 64x64 input, 3 classes over the 64 + 16 + 4 anchors of strides 8, 16, 32.
YOLO_IN, YOLO_OUT = (-1, 3, 64, 64), (-1, 7, 84)


def fake_tensorrt():
    """The module; ``trt.engines`` lists every engine deserialized (the file ``engine`` is the small one,
    ``yolo-engine`` the YOLO-shaped one; anything else does not deserialize)."""
    trt = types.ModuleType("tensorrt")
    trt.engines = []
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
            shapes = {b"engine": (IN_SHAPE, OUT_SHAPE), b"yolo-engine": (YOLO_IN, YOLO_OUT)}.get(data)
            if shapes is None:
                return None
            trt.engines.append(FakeEngine(*shapes))
            return trt.engines[-1]

    trt.Logger, trt.Runtime = Logger, Runtime
    return trt


@pytest.fixture
def fake_modules(monkeypatch):
    """tensorrt and cuda-python replaced by the fakes; returns (trt, cudart)."""
    cudart, trt = FakeCudart(), fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    cuda = types.ModuleType("cuda")
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cudart
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)
    return trt, cudart


@pytest.fixture
def backend(tmp_path, fake_modules):
    _, cudart = fake_modules
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


def test_another_context_shares_the_engine_with_its_own_buffers(backend, fake_modules):
    b, cudart = backend
    trt, _ = fake_modules
    other = b.another_context()
    try:
        assert len(trt.engines) == 1  # loaded once
        engine = trt.engines[0]
        assert len(engine.contexts) == 2 and other._context is not b._context
        assert len(cudart.memory) == 4  # input and output buffers each
        ones, twos = (np.full((2, *IN_SHAPE[1:]), v, np.float32) for v in (1.0, 2.0))
        np.testing.assert_allclose(b.run(ones)[0][:, 0, 0], [1.0, 1.0])
        np.testing.assert_allclose(other.run(twos)[0][:, 0, 0], [2.0, 2.0])
        assert engine.contexts[0].runs == [2] and engine.contexts[1].runs == [2]
        b.close()  # the first context goes; the engine stays for the other
        assert len(cudart.memory) == 2
        np.testing.assert_allclose(other.run(ones[:1])[0][:, 0, 0], [1.0])
    finally:
        other.close()
    assert cudart.memory == {}


@pytest.mark.parametrize(("instances", "how"), [(2, "configured"), ("auto", "measured")])
def test_pool_instances_on_tensorrt_are_contexts_of_one_engine(tmp_path, fake_modules, instances, how):
    from edgeinfer.config import DetectorConfig
    from edgeinfer.detect.pool import GPU_CONTEXTS, open_pool

    trt, _ = fake_modules
    path = tmp_path / "yolo.engine"
    path.write_bytes(b"yolo-engine")
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    cfg = DetectorConfig(model=str(path), backend="tensorrt", instances=instances, threads=4, labels=labels)
    pool = open_pool(cfg, max_batch=MAX_BATCH, data_dir=tmp_path)
    try:
        assert pool.choice.how == how and pool.choice.threads == 1  # no CPU threads to choose on a GPU
        if how == "measured":  # every count of contexts from 1 to GPU_CONTEXTS, at batch 1 and max
            tried = {(m.candidate.instances, m.candidate.batch) for m in pool.choice.measured}
            assert tried == {(n, b) for n in range(1, GPU_CONTEXTS + 1) for b in (1, MAX_BATCH)}
        else:
            assert len(pool.instances) == 2
        assert len(trt.engines) == 1  # the tuning's contexts and the instances: all of the one engine
        engine = trt.engines[0]
        backends = [d.backend for d in pool.instances]
        assert len({id(b._context) for b in backends}) == len(backends)
        images = [np.full((48, 64, 3), 10 * (i + 1), np.uint8) for i in range(2)]
        for detector in pool.instances:
            prepared = pool.prepare(images)
            raw = detector.infer(prepared)  # any instance infers what the pool prepared
            assert raw.shape == (2, 7, 84)
        assert sum(len(c.runs) for c in engine.contexts) >= len(backends)
    finally:
        pool.close()
