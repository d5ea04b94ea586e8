"""A detector: one backend + letterbox/quantize preprocessing + YOLO decoding, assembled once.

The three stages are separate so the pipeline can overlap them: ``prepare`` and ``decode`` are pure
functions of their inputs (safe on any thread); ``infer`` must run on the detector's single worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from edgeinfer.config import DetectorConfig
from edgeinfer.detect.assets import resolve_model
from edgeinfer.detect.backends import open_backend
from edgeinfer.detect.backends.base import Backend
from edgeinfer.detect.detections import Detections
from edgeinfer.detect.modelmeta import load_labels, names_from_metadata, parse_value, sha256_file
from edgeinfer.detect.preprocess import InputWriter, Letterbox
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


@dataclass(frozen=True, slots=True)
class Prepared:
    """A batch ready for the runtime, with each image's letterbox to map boxes back."""

    tensor: np.ndarray
    boxes: tuple[Letterbox, ...]


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    sha256: str
    backend: str
    runtime_version: str
    input_hw: tuple[int, int]
    input_layout: Literal["NHWC", "NCHW"]
    channels: Literal["RGB", "BGR"]
    output_layout: Layout
    normalized_boxes: bool
    labels: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.stem


class Detector:
    def __init__(
        self,
        backend: Backend,
        info: ModelInfo,
        decoder: YoloDecoder,
        output_index: int,
    ) -> None:
        self.backend, self.info, self.decoder = backend, info, decoder
        self.labels = info.labels
        self._output_index = output_index
        inp = backend.input
        self._writer = InputWriter(inp.dtype, inp.scale, inp.zero_point, rgb=info.channels == "RGB")
        self._nchw = info.input_layout == "NCHW"

    # ------------------------------------------------------------ stages

    def prepare(self, images: Sequence[np.ndarray]) -> Prepared:
        in_h, in_w = self.info.input_hw
        tensor = np.empty((len(images), in_h, in_w, 3), dtype=self._writer.dtype)
        tensor[...] = self._writer.pad  # the letterbox bars, already in the input's domain
        boxes = []
        for i, image in enumerate(images):
            box = Letterbox.fit(image.shape[0], image.shape[1], in_h, in_w)
            if (box.new_w, box.new_h) != (image.shape[1], image.shape[0]):
                image = cv2.resize(image, (box.new_w, box.new_h), interpolation=cv2.INTER_LINEAR)
            region = tensor[i, box.pad_top : box.pad_top + box.new_h, box.pad_left : box.pad_left + box.new_w]
            self._writer.write(image, region)
            boxes.append(box)
        if self._nchw:
            tensor = np.ascontiguousarray(tensor.transpose(0, 3, 1, 2))
        return Prepared(tensor, tuple(boxes))

    def infer(self, prepared: Prepared) -> np.ndarray:
        """Run the runtime; returns the raw detection output for the whole batch."""
        return self.backend.run(prepared.tensor)[self._output_index]

    def decode(self, raw: np.ndarray, prepared: Prepared) -> list[Detections]:
        return [self.decoder.decode(raw[i], box) for i, box in enumerate(prepared.boxes)]

    # ------------------------------------------------------------ convenience

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        prepared = self.prepare(images)
        return self.decode(self.infer(prepared), prepared)

    def detect_timed(self, images: Sequence[np.ndarray]) -> tuple[list[Detections], dict[str, float]]:
        t0 = time.perf_counter()
        prepared = self.prepare(images)
        t1 = time.perf_counter()
        raw = self.infer(prepared)
        t2 = time.perf_counter()
        result = self.decode(raw, prepared)
        t3 = time.perf_counter()
        ms = {"preprocess": (t1 - t0) * 1e3, "inference": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3}
        return result, ms

    def close(self) -> None:
        self.backend.close()


def _input_geometry(
    backend: Backend, layout: str, metadata: dict[str, Any] | None = None
) -> tuple[Literal["NHWC", "NCHW"], tuple[int, int]]:
    shape = backend.input.shape
    if len(shape) != 4:
        raise ModelError(f"input shape {shape}: expected 4 dimensions (batch, h, w, 3) or (batch, 3, h, w)")
    if layout == "auto":
        layout = "NCHW" if shape[1] == 3 and shape[3] != 3 else "NHWC"
    h, w = (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])
    if h <= 0 or w <= 0:  # a dynamic-size export (Ultralytics dynamic=True): run it at its export size
        imgsz = (metadata or {}).get("imgsz")
        if isinstance(imgsz, int):
            h = w = imgsz
        elif isinstance(imgsz, list | tuple) and len(imgsz) == 2:
            h, w = imgsz
    if h <= 0 or w <= 0:
        raise ModelError(f"input shape {shape} has a dynamic size; export the model with a fixed imgsz")
    return layout, (int(h), int(w))  # type: ignore[return-value]


def open_detector(
    model: str | Path = "bundled",
    *,
    backend: str = "auto",
    threads: int = 2,
    conf: float = 0.25,
    iou: float = 0.45,
    max_det: int = 300,
    labels: Path | None = None,
    sha256: str | None = None,
    input_layout: str = "auto",
    channels: str = "auto",
    layout: str = "auto",
    boxes: str = "auto",
) -> Detector:
    """Load a model and build its detector. Raises ModelError / BackendError with a clear message."""
    path = resolve_model(str(model))
    digest = sha256_file(path)
    if sha256 is not None and digest.lower() != sha256.lower():
        raise ModelError(f"{path}: sha256 is {digest}, the config pins {sha256}: refusing to start")
    rt = open_backend(backend, path, threads=threads)
    metadata = {k: parse_value(v) if isinstance(v, str) else v for k, v in rt.metadata.items()}
    names = load_labels(labels) if labels else names_from_metadata(metadata)
    in_layout, input_hw = _input_geometry(rt, input_layout, metadata)
    args = metadata.get("args") if isinstance(metadata.get("args"), dict) else {}
    end2end = metadata.get("end2end") is True or args.get("nms") is True
    n_anchors = anchor_count(*input_hw)

    # The detection output: the first output whose shape is a layout we know.
    found: tuple[int, Layout, int] | None = None
    problems = []
    for index, out in enumerate(rt.outputs):
        try:
            if layout != "auto":
                if layout not in LAYOUTS:
                    raise ModelError(f"unknown layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
                chosen: Layout = layout  # type: ignore[assignment]
                found = (index, chosen, layout_classes(chosen, out.shape, len(names) if names else None))
            elif end2end and out.shape[-1] == 6:
                found = (index, "end2end", len(names) if names else 0)
            else:
                shape = tuple(n_anchors if d < 0 and i > 0 else d for i, d in enumerate(out.shape))
                found = (index, *recognise_layout(shape, *input_hw, len(names) if names else None))
            break
        except ModelError as exc:
            problems.append(str(exc))
    if found is None:
        raise ModelError(f"{path.name}: " + "; ".join(problems))
    output_index, out_layout, num_classes = found
    if names is None:
        names = [f"class{i}" for i in range(num_classes)]
    elif num_classes and len(names) != num_classes:
        raise ModelError(
            f"{path.name}: the model has {num_classes} classes but {len(names)} names were given"
        )

    normalized = rt.normalized_boxes(out_layout, in_layout) if boxes == "auto" else boxes == "normalized"
    # Ultralytics exports take RGB; so does the bundled model. Config can say otherwise.
    rgb = channels != "BGR"
    out = rt.outputs[output_index]
    decoder = YoloDecoder(
        out_layout,
        num_classes,
        OutputQuant(out.dtype, out.scale, out.zero_point),
        input_hw=input_hw,
        normalized=normalized,
        conf=conf,
        iou=iou,
        max_det=max_det,
    )
    info = ModelInfo(
        path=path,
        sha256=digest,
        backend=rt.name,
        runtime_version=rt.version,
        input_hw=input_hw,
        input_layout=in_layout,
        channels="RGB" if rgb else "BGR",
        output_layout=out_layout,
        normalized_boxes=normalized,
        labels=names,
        metadata=metadata,
    )
    return Detector(rt, info, decoder, output_index)


def detector_from_config(cfg: DetectorConfig) -> Detector:
    return open_detector(
        cfg.model,
        backend=cfg.backend,
        threads=cfg.threads,
        conf=cfg.conf,
        iou=cfg.iou,
        max_det=cfg.max_det,
        labels=cfg.labels,
        sha256=cfg.sha256,
        input_layout=cfg.input_layout,
        channels=cfg.channels,
        layout=cfg.layout,
        boxes=cfg.boxes,
    )
