"""`edgeinfer --version` and `--help` stay cheap: building the parser imports no heavy module.

Held by module names and a module count, not by time (times vary with the machine and its load). Each verb
in edgeinfer/commands/ defines add_parser() on light imports and imports what it runs on inside run().
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

HEAVY = (
    "cv2",
    "numpy",
    "paho",
    "influxdb_client",
    "prometheus_client",
    "pydantic",
    "yaml",
    "onnxruntime",
    "ai_edge_litert",
    "tflite_runtime",
    "tensorrt",
    "asyncio",
    "sqlite3",
    "edgeinfer.app",
    "edgeinfer.pipeline",
    "edgeinfer.detect",
    "edgeinfer.config",
    "edgeinfer.store",
    "edgeinfer.mqtt",
    "edgeinfer.sinks",
    "edgeinfer.sources",
    "edgeinfer.sensors",
)

# Modules that importing edgeinfer.cli and building the parser adds to a bare interpreter's: 84 on
# CPython 3.11 (argparse, pathlib, json, dataclasses and what they pull in, plus 14 of edgeinfer's own);
# 468 in all before the verbs imported lazily. The margin is for other Python versions, not new imports.
MAX_ADDED_MODULES = 110

_PROBE = """
import json, sys
before = set(sys.modules)
from edgeinfer.cli import build_parser
build_parser()
print(json.dumps({"before": len(before), "added": sorted(set(sys.modules) - before)}))
"""


# Light modules inside heavy packages: the backend-name Literal that `--backend` takes its choices from
# (these import only typing, importlib and edgeinfer.errors; numpy and the runtimes stay out, as checked above).
LIGHT = {"edgeinfer.detect", "edgeinfer.detect.backends", "edgeinfer.detect.backends.names"}


def _heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if m not in LIGHT and any(m == h or m.startswith(h + ".") for h in HEAVY)]


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=60, check=False
    )


def test_building_the_parser_imports_only_light_modules() -> None:
    result = _python("-c", _PROBE)
    assert result.returncode == 0, result.stderr
    added = json.loads(result.stdout)["added"]
    assert _heavy(added) == []
    assert len(added) <= MAX_ADDED_MODULES, added


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["--help"],
        ["run", "--help"],
        ["detect", "--help"],
        ["events", "--help"],
        ["bench", "--help"],
        ["model", "inspect", "--help"],
        ["config", "check", "--help"],
        ["watch", "--help"],
    ],
    ids=" ".join,
)
def test_version_and_help_import_no_heavy_module(argv: list[str]) -> None:
    result = _python("-X", "importtime", "-m", "edgeinfer", *argv)
    assert result.returncode == 0, result.stderr
    imported = [
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and not line.rstrip().endswith("imported package")
    ]
    assert "edgeinfer.cli" in imported
    assert _heavy(imported) == []
    if argv == ["--version"]:
        assert result.stdout == "edgeinfer 0.1.0\n"
    else:
        assert result.stdout.startswith("usage: edgeinfer")
