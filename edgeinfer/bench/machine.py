"""A description of the machine a benchmark ran on (goes into the JSON and RESULTS.md)."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import sys
from typing import Any

from edgeinfer.detect.tuning import cpu_model

_PACKAGES = ("edgeinfer", "numpy", "opencv-python-headless", "opencv-python", "ai-edge-litert", "onnxruntime")


def _versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    return out


def describe() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_model": cpu_model(),
        "arch": platform.machine(),
        "cores_logical": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "python_impl": platform.python_implementation(),
        "runtime_versions": _versions(),
    }
    with contextlib.suppress(AttributeError, OSError):
        info["cores_usable"] = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, AttributeError):
        info["load_avg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    try:
        import psutil

        info["cores_physical"] = psutil.cpu_count(logical=False)
        info["memory_mb"] = round(psutil.virtual_memory().total / 2**20)
    except ImportError:  # pragma: no cover - psutil is in the bench extra
        pass
    info["executable"] = sys.executable
    return info
