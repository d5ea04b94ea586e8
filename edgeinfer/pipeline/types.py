"""The pipeline's typed values and the seams it is driven through.

Values (frozen): :class:`Stage`, :class:`StageTimes`, :class:`DetectionEvent`, :class:`Outcome`,
:class:`PipelineStatus`. Seams (protocols): :class:`DetectorLike`, what the pipeline uses of a detector,
and :class:`PipelineObserver`, what it reports to (the daemon's metrics implement it). The pipeline
never imports the daemon (``edgeinfer.app``), the sinks or the sensors: they plug in through these.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, Protocol, TypeVar

import numpy as np

from edgeinfer.detect.detections import Detections
from edgeinfer.sources.frame import Frame
from edgeinfer.store.sqlite import EventRow, MessageRow
from edgeinfer.timefmt import rfc3339_ms


class Stage(StrEnum):
    """The stages a frame's latency is split into (``output`` is the store's commit, timed by the writer)."""

    QUEUE = "queue"
    PREPROCESS = "preprocess"
    INFERENCE = "inference"
    POSTPROCESS = "postprocess"
    OUTPUT = "output"
    E2E = "e2e"


# The stages the pipeline times for every frame, in the order it records them.
FRAME_STAGES = (Stage.QUEUE, Stage.PREPROCESS, Stage.INFERENCE, Stage.POSTPROCESS, Stage.E2E)
# The contract's order: an event's ``latency_ms`` and the fields of the ``inference`` point.
EVENT_STAGES = (Stage.E2E, Stage.QUEUE, Stage.PREPROCESS, Stage.INFERENCE, Stage.POSTPROCESS)

# superseded: a newer frame of the camera replaced it before batching; stale: too old when the batch formed;
# detector_error: the detector (or the outcome builder) raised on its batch.
DropReason = Literal["superseded", "stale", "detector_error"]
ContextLookup = Callable[[list[str]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class StageTimes:
    """One frame's time in each stage it went through, in milliseconds."""

    queue: float
    preprocess: float
    inference: float
    postprocess: float
    e2e: float

    def __getitem__(self, stage: Stage | str) -> float:
        value: float = getattr(self, Stage(stage).value)
        return value

    def items(self) -> Iterator[tuple[Stage, float]]:
        """(stage, ms) in :data:`FRAME_STAGES` order."""
        for stage in FRAME_STAGES:
            yield stage, getattr(self, stage.value)

    def rounded(self) -> dict[str, float]:
        """The contract's ``latency_ms``: every stage in :data:`EVENT_STAGES` order, to the microsecond."""
        return {stage.value: round(getattr(self, stage.value), 3) for stage in EVENT_STAGES}


@dataclass(frozen=True, slots=True)
class DetectionEvent:
    """One detection event; :meth:`to_json` is the payload of schemas/detection-event.schema.json."""

    device: str
    camera: str
    seq: int
    wall_ns: int  # capture time
    model: str
    detections: tuple[dict[str, Any], ...]  # the contract's objects: label, class_id, score, box
    latency: StageTimes
    batch_size: int
    context: Mapping[str, Any] | None = None
    frame: int | None = None  # the frame's index in its source (Frame.index); omitted when unknown

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"device": self.device, "camera": self.camera, "seq": self.seq}
        if self.frame is not None:
            body["frame"] = self.frame
        body.update(
            ts=rfc3339_ms(self.wall_ns),
            model=self.model,
            detections=list(self.detections),
            latency_ms=self.latency.rounded(),
            batch_size=self.batch_size,
        )
        if self.context:
            body["context"] = dict(self.context)
        return body

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"))

    def row(self) -> EventRow:
        return EventRow(self.camera, self.wall_ns, self.dumps(), self.seq)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one processed frame produces for the store: the event row (if emitted), the points, and the
    other MQTT messages (tracking lifecycle, retained counts); and the detections it was built from
    (after the camera's filters), for the live view."""

    event: EventRow | None
    points: list[tuple[int, str]]
    messages: Sequence[MessageRow] = ()
    detections: Detections | None = None


@dataclass(frozen=True, slots=True)
class PipelineStatus:
    """The pipeline's own counters at one instant of its clock (the daemon adds its metrics' windows)."""

    mono: float  # the pipeline's clock when taken
    uptime_s: float
    frames: dict[str, int]  # processed per camera since start
    drops: dict[str, int]  # superseded + stale per camera since start
    cameras_up: dict[str, bool]  # per started camera: reading frames now


# ---------------------------------------------------------------------------- seams

P = TypeVar("P")


class ModelInfoLike(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def backend(self) -> str: ...


class DetectorLike(Protocol[P]):
    """What the pipeline uses of :class:`edgeinfer.detect.detector.Detector`.

    ``prepare`` and ``decode`` may run on any thread; ``infer`` only ever runs on the pipeline's
    single infer thread. ``P`` is the detector's own prepared batch, opaque to the pipeline.
    """

    @property
    def labels(self) -> list[str]: ...

    @property
    def info(self) -> ModelInfoLike: ...

    def prepare(self, images: Sequence[np.ndarray]) -> P: ...

    def infer(self, prepared: P) -> np.ndarray: ...

    def decode(self, raw: np.ndarray, prepared: P) -> list[Detections]: ...


# Each processed frame and its detections, on the event loop, in each camera's frame order. It must only
# keep references (the live view encodes later, and only while somebody watches).
FrameResultHook = Callable[[Frame, Detections], None]


@dataclass(frozen=True, slots=True, eq=False)
class TrackedDetections(Detections):
    """Detections of a tracking camera, each with its track id (None: not tracked), for the live view."""

    track_id: tuple[str | None, ...] = ()


class PipelineObserver(Protocol):
    """What the pipeline reports, always from the event loop's thread."""

    def bind(self, cameras: Sequence[str]) -> None:
        """The cameras there will be (called once, before any frame)."""

    def frame_captured(self, camera: str) -> None: ...

    def frame_dropped(self, camera: str, reason: DropReason) -> None: ...

    def frame_done(self, camera: str, times: StageTimes, event: bool, done: float) -> None:
        """A frame went through the detector; ``done`` is the pipeline clock when its result was ready."""

    def batch_done(self, size: int) -> None: ...


class NullObserver:
    """Reports nowhere."""

    def bind(self, cameras: Sequence[str]) -> None:
        pass

    def frame_captured(self, camera: str) -> None:
        pass

    def frame_dropped(self, camera: str, reason: DropReason) -> None:
        pass

    def frame_done(self, camera: str, times: StageTimes, event: bool, done: float) -> None:
        pass

    def batch_done(self, size: int) -> None:
        pass
