"""Where the bundled model, demo clip and test images live (wheel: edgeinfer/_bundled, checkout: models/bundled)."""

from __future__ import annotations

import json
import logging
from functools import cache
from pathlib import Path
from typing import Any

from edgeinfer.errors import ModelError

logger = logging.getLogger(__name__)

_PACKAGE = Path(__file__).resolve().parent.parent  # edgeinfer/


@cache
def bundled_dir() -> Path:
    for candidate in (_PACKAGE / "_bundled", _PACKAGE.parent / "models" / "bundled"):
        if (candidate / "manifest.json").is_file():
            return candidate
    raise ModelError("the bundled model files are missing (expected models/bundled/manifest.json)")


@cache
def manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((bundled_dir() / "manifest.json").read_text(encoding="utf-8"))
    return data


# Old names of bundled models, still accepted with a warning. shapes-n was renamed shapes-m (2026-12-01) so
# that the names follow YOLO's n < s < m size order: it is 4x the size of shapes-s.
RENAMED = {"shapes-n": "shapes-m"}


def bundled_model_entry(name: str = "bundled") -> dict[str, Any]:
    """The manifest entry of a bundled model: 'bundled' is the default one."""
    data = manifest()
    if name in RENAMED:
        logger.warning("model %s is now called %s: use that name (the old one will go)", name, RENAMED[name])
        name = RENAMED[name]
    wanted = data["default"] if name == "bundled" else name
    for entry in data["models"]:
        if entry["name"] == wanted:
            return dict(entry)
    names = ", ".join(m["name"] for m in data["models"])
    raise ModelError(f"no bundled model named {name!r} (bundled: {names})")


# A bundled model's file for a runtime other than LiteRT: the manifest sibling that runtime loads.
_SIBLING_FOR = {"onnxruntime": "onnx_int8"}


def resolve_model(spec: str, backend: str = "auto") -> Path:
    """Turn detector.model into a file path: 'bundled', a bundled name, or a path that must exist.

    A bundled name with ``backend: onnxruntime`` is its INT8 ONNX sibling (LiteRT's file otherwise)."""
    data = manifest() if spec == "bundled" or ("/" not in spec and not Path(spec).suffix) else None
    if data is not None:
        entry = bundled_model_entry(spec)
        sibling = entry.get("siblings", {}).get(_SIBLING_FOR.get(backend, ""))
        return bundled_dir() / str(sibling or entry["file"])
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    return path


def demo_clip() -> Path:
    """The bundled clip (its absence is reported by the camera that opens it, not by the config)."""
    for candidate in (_PACKAGE / "_bundled", _PACKAGE.parent / "models" / "bundled"):
        if (candidate / "demo.mp4").is_file():
            return candidate / "demo.mp4"
    return _PACKAGE.parent / "models" / "bundled" / "demo.mp4"


def test_images_dir() -> Path:
    return bundled_dir() / "testimages"
