"""open_detector's steps, and the backend names: one Literal for the config, the CLIs and the registry."""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import get_args

import numpy as np
import pytest

from edgeinfer.bench.cli import add_arguments
from edgeinfer.cli import build_parser
from edgeinfer.config import DetectorConfig
from edgeinfer.detect import build
from edgeinfer.detect.assets import bundled_dir, bundled_model_entry
from edgeinfer.detect.backends import REGISTRY, open_backend
from edgeinfer.detect.backends.base import TensorInfo
from edgeinfer.detect.backends.names import BACKEND_NAMES
from edgeinfer.detect.build import (
    class_names,
    find_output,
    input_geometry,
    is_end2end,
    open_detector,
    resolve_pinned,
)
from edgeinfer.errors import ModelError

N = 2100  # anchors of a 320x320 input


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


@pytest.mark.parametrize(
    ("shape", "layout", "metadata", "expected"),
    [
        ((1, 320, 320, 3), "auto", None, ("NHWC", (320, 320))),
        ((1, 3, 256, 320), "auto", None, ("NCHW", (256, 320))),
        ((1, 3, 320, 3), "NHWC", None, ("NHWC", (3, 320))),
        ((1, 3, -1, -1), "auto", {"imgsz": 64}, ("NCHW", (64, 64))),
        ((-1, -1, -1, 3), "auto", {"imgsz": [48, 64]}, ("NHWC", (48, 64))),
    ],
)
def test_input_geometry(shape, layout, metadata, expected):
    assert input_geometry(shape, layout, metadata) == expected


@pytest.mark.parametrize(
    ("shape", "message"), [((1, 320, 320), "expected 4 dimensions"), ((1, 3, -1, -1), "dynamic size")]
)
def test_input_geometry_refuses(shape, message):
    with pytest.raises(ModelError, match=message):
        input_geometry(shape, "auto", {})


def _out(shape, dtype=np.float32):
    return TensorInfo("out", shape, np.dtype(dtype))


def test_find_output_takes_the_first_output_in_a_known_layout():
    outputs = [_out((1, 10, 17)), _out((1, 7, N))]
    found = find_output(outputs, "auto", (320, 320), None, end2end=False, model="m.onnx")
    assert (found.index, found.layout, found.num_classes, found.tensor) == (1, "yolov8", 3, outputs[1])


def test_find_output_fills_a_dynamic_anchor_count_and_knows_end2end_from_the_metadata():
    found = find_output([_out((1, 7, -1))], "auto", (320, 320), None, end2end=False, model="m.onnx")
    assert (found.layout, found.num_classes) == ("yolov8", 3)
    e2e = find_output([_out((1, 300, 6))], "auto", (320, 320), ["a", "b"], end2end=True, model="m.onnx")
    assert (e2e.index, e2e.layout, e2e.num_classes) == (0, "end2end", 2)


def test_find_output_in_a_forced_layout_and_its_failures():
    forced = find_output(
        [_out((1, N, 9)), _out((1, 7, N))], "yolov8t", (320, 320), None, end2end=False, model="m"
    )
    assert (forced.index, forced.layout, forced.num_classes) == (0, "yolov8t", 5)
    with pytest.raises(ModelError, match=r"^m\.onnx: output shape \(1, 10, 17\).*; output shape \(1, 3\)"):
        find_output(
            [_out((1, 10, 17)), _out((1, 3))], "auto", (320, 320), None, end2end=False, model="m.onnx"
        )
    with pytest.raises(ModelError, match="unknown layout 'yolov9'"):
        find_output([_out((1, 7, N))], "yolov9", (320, 320), None, end2end=False, model="m")  # type: ignore[arg-type]


def test_class_names():
    assert class_names(None, 3, "m") == ["class0", "class1", "class2"]
    assert class_names(["a", "b"], 0, "m") == ["a", "b"]  # end2end without a class count
    with pytest.raises(ModelError, match="m: the model has 3 classes but 2 names were given"):
        class_names(["a", "b"], 3, "m")


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [({}, False), ({"end2end": True}, True), ({"args": {"nms": True}}, True), ({"args": "nms=True"}, False)],
)
def test_is_end2end(metadata, expected):
    assert is_end2end(metadata) is expected


def test_resolve_pinned_refuses_a_different_file():
    digest = bundled_model_entry()["sha256"]
    path, got = resolve_pinned("bundled", digest.upper())
    assert path.name == "shapes-s_int8.tflite" and got == digest
    with pytest.raises(ModelError, match="refusing to start"):
        resolve_pinned("bundled", "0" * 64)


def test_open_detector_takes_overrides_from_a_config_copy():
    det = open_detector(DetectorConfig().model_copy(update={"conf": 0.5, "max_det": 7, "boxes": "pixels"}))
    try:
        assert (det.decoder.conf, det.decoder.max_det, det.info.normalized_boxes) == (0.5, 7, False)
        assert det.info.backend in ("litert", "tflite_runtime") and det.labels == [
            "circle",
            "square",
            "triangle",
        ]
    finally:
        det.close()


def test_open_detector_closes_the_backend_when_a_later_step_fails(tmp_path, monkeypatch):
    closed = []

    def recording_open_backend(name, path, *, threads):
        backend = open_backend(name, path, threads=threads)
        monkeypatch.setattr(backend, "close", lambda: closed.append(path.name))
        return backend

    monkeypatch.setattr(build, "open_backend", recording_open_backend)
    labels = tmp_path / "labels.txt"
    labels.write_text("one\ntwo\n")
    with pytest.raises(ModelError, match="3 classes but 2 names"):
        open_detector(DetectorConfig(labels=labels))
    assert closed == ["shapes-s_int8.tflite"]
