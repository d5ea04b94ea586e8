"""The backend names: one Literal for the config, the CLIs and the registry; the backends' box units."""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import get_args

from edgeinfer.bench.cli import add_arguments
from edgeinfer.cli import build_parser
from edgeinfer.config import DetectorConfig
from edgeinfer.detect.assets import bundled_dir
from edgeinfer.detect.backends import REGISTRY, open_backend
from edgeinfer.detect.backends.names import BACKEND_NAMES


def _choices(parser: argparse.ArgumentParser, option: str) -> tuple[str, ...]:
    for action in parser._actions:
        if option in action.option_strings:
            return tuple(action.choices)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found = _choices(sub, option)
                if found:
                    return found
    return ()


def test_backend_names_are_the_registry_and_what_the_config_and_clis_accept():
    assert set(BACKEND_NAMES) == {"auto", *REGISTRY}
    assert get_args(DetectorConfig.model_fields["backend"].annotation) == BACKEND_NAMES
    detect = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[
        "detect"
    ]
    assert _choices(detect, "--backend") == BACKEND_NAMES
    bench = argparse.ArgumentParser()
    add_arguments(bench)
    assert _choices(bench, "--backend") == BACKEND_NAMES


def test_the_config_imports_no_numpy_for_the_backend_names():
    code = "import sys, edgeinfer.config; print('numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_backends_declare_their_box_units():
    tflite = open_backend("litert", bundled_dir() / "shapes-s_int8.tflite", threads=1)
    onnx = open_backend("onnxruntime", bundled_dir() / "shapes-s.onnx", threads=1)
    try:
        assert tflite.normalized_boxes("yolov8", "NHWC") is True
        assert tflite.normalized_boxes("end2end", "NHWC") is True  # onnx2tf normalises even post-NMS boxes
        assert tflite.normalized_boxes("end2end", "NCHW") is False  # litert-torch: post-NMS input pixels
        assert onnx.normalized_boxes("yolov8", "NCHW") is False
    finally:
        tflite.close()
        onnx.close()
