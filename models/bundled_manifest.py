"""models/bundled/manifest.json, read and written the same way by export.py, evaluate.py and
quantize_onnx.py (each updates its own part of a variant's entry and keeps the rest)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PATH = Path(__file__).resolve().parent / "bundled" / "manifest.json"


def read() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(PATH.read_text(encoding="utf-8")) if PATH.is_file() else {"models": []}
    return data


def entry(data: dict[str, Any], variant: str) -> dict[str, Any]:
    found: dict[str, Any] = next(m for m in data["models"] if m["name"] == variant)
    return found


def write(data: dict[str, Any]) -> None:
    PATH.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
