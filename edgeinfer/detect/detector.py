"""A detector: one backend + letterbox/quantize preprocessing + YOLO decoding, assembled once.

The three stages are separate so the pipeline can overlap them: ``prepare`` and ``decode`` are safe on any
thread (``prepare`` lends out an input tensor that ``infer`` gives back: preprocess.Preprocessor); ``infer``
must run on the detector's single worker thread. Build one with :func:`edgeinfer.detect.build.open_detector`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edgeinfer.detect.backends.base import Backend, InputLayout
from edgeinfer.detect.detections import Detections
from edgeinfer.detect.preprocess import InputWriter, Prepared, Preprocessor
from edgeinfer.detect.yolo import Layout, YoloDecoder

__all__ = ["Detector", "ModelInfo", "Prepared"]


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    sha256: str
    backend: str
    runtime_version: str
    input_hw: tuple[int, int]
    input_layout: InputLayout
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
        preprocessor: Preprocessor | None = None,
    ) -> None:
        """``preprocessor``: share another instance's (same model): then either instance infers what the
        other prepared."""
        self.backend, self.info, self.decoder = backend, info, decoder
        self.labels = info.labels
        self._output_index = output_index
        if preprocessor is None:
            inp = backend.input
            writer = InputWriter(inp.dtype, inp.scale, inp.zero_point, rgb=info.channels == "RGB")
            preprocessor = Preprocessor(info.input_hw, writer, nchw=info.input_layout == "NCHW")
        self.preprocessor = preprocessor

    # ------------------------------------------------------------ stages

    def prepare(self, images: Sequence[np.ndarray]) -> Prepared:
        """Letterbox and quantize a batch of BGR uint8 images into an input tensor lent until :meth:`infer`."""
        return self.preprocessor.prepare(images)

    def infer(self, prepared: Prepared) -> np.ndarray:
        """Run the runtime; returns the raw detection output for the whole batch.

        The prepared tensor goes back to the preprocessor when the runtime returns (``decode`` needs only
        the letterboxes), so each Prepared is inferred once."""
        self.preprocessor.check(prepared)
        try:
            return self.backend.run(prepared.tensor)[self._output_index]
        finally:
            self.preprocessor.release(prepared)

    def decode(self, raw: np.ndarray, prepared: Prepared) -> list[Detections]:
        return [self.decoder.decode(raw[i], box) for i, box in enumerate(prepared.boxes)]

    def input_tensor(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """The input tensor of ``images`` as an array of its own, for bare runtime runs (tuning, benchmarks,
        calibration); the lent tensor goes straight back to the preprocessor."""
        prepared = self.prepare(images)
        try:
            return prepared.tensor.copy()
        finally:
            self.preprocessor.release(prepared)

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
