"""Model files: class names from metadata (Ultralytics' conventions) or a labels file, and checksums.

Ultralytics stores its metadata dict with the model: in a .tflite as a zip archive appended to the
flatbuffer (one member: ``metadata.json`` with JSON, or ``metadata.txt`` with a Python-literal dict in
older tflite-support exports); in an .onnx as ``metadata_props`` whose values are ``str(value)``.
"""

from __future__ import annotations

import ast
import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import yaml

from edgeinfer.errors import ModelError


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_value(text: str) -> Any:
    """A metadata value: JSON, else a Python literal, else the string itself."""
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return text


def read_appended_metadata(path: Path) -> dict[str, Any]:
    """The metadata dict zipped onto a .tflite file, or {} when there is none."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()
            if not members:
                return {}
            value = parse_value(archive.read(members[0]).decode("utf-8"))
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, KeyError):
        return {}
    return value if isinstance(value, dict) else {}


def names_from_metadata(metadata: dict[str, Any]) -> list[str] | None:
    """Class names from Ultralytics-style metadata: {0: 'person', ...} (int or str keys) or a list."""
    names = metadata.get("names")
    if isinstance(names, str):
        names = parse_value(names)
    if isinstance(names, list):
        return [str(n) for n in names]
    if isinstance(names, dict) and names:
        try:
            by_index = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            return None
        return [by_index.get(i, f"class{i}") for i in range(max(by_index) + 1)]
    return None


def load_labels(path: Path) -> list[str]:
    """A labels file: YAML with ``names:`` (mapping or list), else plain text with one name per line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelError(f"cannot read labels file {path}: {exc.strerror}") from None
    if path.suffix.lower() in {".yaml", ".yml"} or text.lstrip().startswith("names:"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ModelError(f"labels file {path}: not valid YAML: {exc}") from None
        names = names_from_metadata(data) if isinstance(data, dict) else None
        if not names:
            raise ModelError(f"labels file {path}: expected a 'names:' mapping or list")
        return names
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ModelError(f"labels file {path} is empty")
    return names
