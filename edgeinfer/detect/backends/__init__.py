"""Inference runtimes behind one Protocol, chosen once at build time.

The registry maps a backend name to a lazy import string, so ``import edgeinfer`` never imports a runtime;
this module imports no numpy either (config/schema.py reaches :mod:`.names` through it).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from edgeinfer.detect.backends.names import BACKEND_NAMES, BackendName
from edgeinfer.errors import BackendError

if TYPE_CHECKING:
    from edgeinfer.detect.backends.base import Backend

__all__ = ["BACKEND_NAMES", "REGISTRY", "BackendName", "backend_for_file", "open_backend"]

# Every BackendName but "auto" (tests/unit/test_backends.py checks the two agree).
REGISTRY: dict[str, str] = {
    "litert": "edgeinfer.detect.backends.litert:LiteRTBackend",
    "tflite": "edgeinfer.detect.backends.litert:LiteRTBackend",  # same class; it falls back to tflite_runtime
    "onnxruntime": "edgeinfer.detect.backends.onnxrt:OnnxRuntimeBackend",
    "tensorrt": "edgeinfer.detect.backends.tensorrt:TensorRTBackend",
}
_BY_SUFFIX: dict[str, BackendName] = {
    ".tflite": "litert",
    ".onnx": "onnxruntime",
    ".engine": "tensorrt",
    ".plan": "tensorrt",
}


def backend_for_file(path: Path) -> BackendName:
    try:
        return _BY_SUFFIX[path.suffix.lower()]
    except KeyError:
        raise BackendError(
            f"cannot tell the runtime for {path.name}: expected .tflite, .onnx or .engine "
            "(or set detector.backend)"
        ) from None


def open_backend(name: BackendName, path: Path, *, threads: int) -> Backend:
    """Instantiate a backend by name ('auto' picks by file suffix)."""
    if name == "auto":
        name = backend_for_file(path)
    module_name, _, class_name = REGISTRY[name].partition(":")
    module = importlib.import_module(module_name)
    backend: Backend = getattr(module, class_name)(path, threads=threads)
    return backend
