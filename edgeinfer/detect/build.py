"""open_detector: a DetectorConfig in, a ready Detector out. The one way to build a detector.

Each step is a small function: resolve the model file and check its sha256 pin, open the backend, read its
metadata and class names, work out the input geometry, find the detection output and its layout, decide
the box units, and build the decoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edgeinfer.config import DetectorConfig
from edgeinfer.detect.assets import resolve_model
from edgeinfer.detect.backends import open_backend
from edgeinfer.detect.backends.base import Backend, InputLayout, TensorInfo
from edgeinfer.detect.detector import Detector, ModelInfo
from edgeinfer.detect.modelmeta import load_labels, names_from_metadata, parse_value, sha256_file
from edgeinfer.detect.yolo import (
    LAYOUTS,
    Layout,
    OutputQuant,
    YoloDecoder,
    anchor_count,
    layout_classes,
    recognise_layout,
)
from edgeinfer.errors import ModelError


def open_detector(cfg: DetectorConfig) -> Detector:
    """Load ``cfg.model`` and build its detector. Raises ModelError / BackendError with a clear message."""
    path, digest = resolve_pinned(cfg.model, cfg.sha256, cfg.backend)
    threads = cfg.threads if isinstance(cfg.threads, int) else single_instance_threads()
    backend = open_backend(cfg.backend, path, threads=threads)
    try:
        return assemble(cfg, path, digest, backend)
    except BaseException:
        backend.close()
        raise


def single_instance_threads() -> int:
    """``threads: auto`` for one detector on its own (``edgeinfer detect``): up to 2 runtime threads, which
    is where XNNPACK stops gaining on small models (:mod:`edgeinfer.detect.tuning` measures the rest)."""
    from edgeinfer.detect.tuning import usable_cores

    return min(2, usable_cores())


def assemble(
    cfg: DetectorConfig, path: Path, digest: str, backend: Backend, *, like: Detector | None = None
) -> Detector:
    """The detector around an open ``backend`` of ``path`` (the caller closes the backend on failure).

    ``like``: another instance of the same model, whose preprocessing this one shares."""
    metadata = read_metadata(backend)
    names = load_labels(cfg.labels) if cfg.labels else names_from_metadata(metadata)
    input_layout, input_hw = input_geometry(backend.input.shape, cfg.input_layout, metadata)
    output = find_output(
        backend.outputs, cfg.layout, input_hw, names, end2end=is_end2end(metadata), model=path.name
    )
    labels = class_names(names, output.num_classes, path.name)
    normalized = (
        backend.normalized_boxes(output.layout, input_layout)
        if cfg.boxes == "auto"
        else cfg.boxes == "normalized"
    )
    decoder = YoloDecoder(
        output.layout,
        OutputQuant(output.tensor.dtype, output.tensor.scale, output.tensor.zero_point),
        input_hw=input_hw,
        normalized=normalized,
        conf=cfg.conf,
        iou=cfg.iou,
        max_det=cfg.max_det,
    )
    info = ModelInfo(
        path=path,
        sha256=digest,
        backend=backend.name,
        runtime_version=backend.version,
        input_hw=input_hw,
        input_layout=input_layout,
        # Ultralytics exports take RGB; so does the bundled model. Config can say otherwise.
        channels="BGR" if cfg.channels == "BGR" else "RGB",
        output_layout=output.layout,
        normalized_boxes=normalized,
        labels=labels,
        metadata=metadata,
    )
    return Detector(backend, info, decoder, output.index, like.preprocessor if like else None)


# ------------------------------------------------------------------ the steps


def resolve_pinned(model: str, sha256: str | None, backend: str = "auto") -> tuple[Path, str]:
    """The model file and its sha256; refuses a file that differs from the pin."""
    path = resolve_model(model, backend)
    digest = sha256_file(path)
    if sha256 is not None and digest.lower() != sha256.lower():
        raise ModelError(f"{path}: sha256 is {digest}, the config pins {sha256}: refusing to start")
    return path, digest


def read_metadata(backend: Backend) -> dict[str, Any]:
    """The model's metadata with each string value parsed (Ultralytics stores ``str(value)`` in ONNX)."""
    return {k: parse_value(v) if isinstance(v, str) else v for k, v in backend.metadata.items()}


def is_end2end(metadata: dict[str, Any]) -> bool:
    """Whether the export says its output is already NMS-ed (YOLOv10/YOLO26 end2end, or ``nms=True``)."""
    args = metadata.get("args")
    return metadata.get("end2end") is True or (isinstance(args, dict) and args.get("nms") is True)


def input_geometry(
    shape: tuple[int, ...], layout: Literal["auto", "NHWC", "NCHW"], metadata: dict[str, Any] | None = None
) -> tuple[InputLayout, tuple[int, int]]:
    """(layout, (h, w)) of a 4-D image input; a dynamic size is taken from the export's ``imgsz``."""
    if len(shape) != 4:
        raise ModelError(f"input shape {shape}: expected 4 dimensions (batch, h, w, 3) or (batch, 3, h, w)")
    auto: InputLayout = "NCHW" if shape[1] == 3 and shape[3] != 3 else "NHWC"
    resolved = auto if layout == "auto" else layout
    h, w = (shape[2], shape[3]) if resolved == "NCHW" else (shape[1], shape[2])
    if h <= 0 or w <= 0:  # a dynamic-size export (Ultralytics dynamic=True): run it at its export size
        imgsz = (metadata or {}).get("imgsz")
        if isinstance(imgsz, int):
            h = w = imgsz
        elif isinstance(imgsz, list | tuple) and len(imgsz) == 2:
            h, w = imgsz
    if h <= 0 or w <= 0:
        raise ModelError(f"input shape {shape} has a dynamic size; export the model with a fixed imgsz")
    return resolved, (int(h), int(w))


@dataclass(frozen=True, slots=True)
class Output:
    """The detection output: which tensor, in which layout, with how many classes."""

    index: int
    layout: Layout
    num_classes: int
    tensor: TensorInfo


def find_output(
    outputs: list[TensorInfo],
    layout: Layout | Literal["auto"],
    input_hw: tuple[int, int],
    names: list[str] | None,
    *,
    end2end: bool,
    model: str,
) -> Output:
    """The first output whose shape is a layout we know (or the first output, in a forced layout)."""
    num_names = len(names) if names else None
    if layout != "auto":
        if layout not in LAYOUTS:
            raise ModelError(f"{model}: unknown layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
        if not outputs:
            raise ModelError(f"{model}: the model has no outputs")
        return Output(0, layout, layout_classes(layout, outputs[0].shape, num_names), outputs[0])
    n_anchors = anchor_count(*input_hw)
    problems = []
    for index, out in enumerate(outputs):
        if end2end and out.shape[-1] == 6:
            return Output(index, "end2end", num_names or 0, out)
        shape = tuple(n_anchors if d < 0 and i > 0 else d for i, d in enumerate(out.shape))
        try:
            found, num_classes = recognise_layout(shape, *input_hw, num_names)
        except ModelError as exc:
            problems.append(str(exc))
            continue
        return Output(index, found, num_classes, out)
    raise ModelError(f"{model}: " + "; ".join(problems))


def class_names(names: list[str] | None, num_classes: int, model: str) -> list[str]:
    """The given names (which must match the model's class count when it has one), else class0..classN."""
    if names is None:
        return [f"class{i}" for i in range(num_classes)]
    if num_classes and len(names) != num_classes:
        raise ModelError(f"{model}: the model has {num_classes} classes but {len(names)} names were given")
    return names
