"""From a frame's detections to an outcome: per-camera filters and zones, the event policy, and the event
JSON and InfluxDB points that go to the store. :class:`OutcomeBuilder` holds the per-camera parts; the
stages call it on a worker thread, never on the event loop."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgeinfer.config import CameraConfig, MinIntervalPolicy
from edgeinfer.detect.detections import Detections
from edgeinfer.lineprotocol import format_point
from edgeinfer.pipeline.types import (
    EVENT_STAGES,
    ContextLookup,
    DetectionEvent,
    Outcome,
    StageTimes,
)
from edgeinfer.sources.frame import Frame
from edgeinfer.timefmt import rfc3339_ms

__all__ = [
    "CameraFilter",
    "EventPolicy",
    "Outcome",
    "OutcomeBuilder",
    "build_outcome",
    "points_in_polygon",
    "rfc3339_ms",
]

_POINT_FIELDS = tuple((stage.value, f"{stage.value}_ms") for stage in EVENT_STAGES)


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd ray casting, vectorised over points (N, 2) for one polygon (M, 2)."""
    x, y = points[:, 0:1], points[:, 1:2]
    x1, y1 = polygon[:, 0], polygon[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    crosses = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    inside: np.ndarray = np.logical_and(crosses, x < x_at).sum(axis=1) % 2 == 1
    return inside


class CameraFilter:
    """Class allow-list, per-class minimum scores and zones (bottom-centre of the box inside a polygon)."""

    def __init__(self, camera: CameraConfig, labels: list[str]) -> None:
        self._allowed = None
        if camera.classes is not None:
            self._allowed = np.array([label in camera.classes for label in labels], dtype=bool)
        self._min_score = np.zeros(len(labels), np.float32)
        for label, score in camera.min_score.items():
            if label in labels:
                self._min_score[labels.index(label)] = score
        self._zones = [np.asarray(zone, np.float64) for zone in camera.zones]
        self.passthrough = self._allowed is None and not camera.min_score and not self._zones

    def __call__(self, dets: Detections) -> Detections:
        if self.passthrough or len(dets) == 0:
            return dets
        cls = np.clip(dets.class_id, 0, len(self._min_score) - 1)
        keep = dets.confidence >= self._min_score[cls]
        if self._allowed is not None:
            keep &= self._allowed[cls] & (dets.class_id < len(self._allowed))
        if self._zones:
            foot = np.stack([(dets.xyxy[:, 0] + dets.xyxy[:, 2]) / 2, dets.xyxy[:, 3]], axis=1)
            keep &= np.any([points_in_polygon(foot, zone) for zone in self._zones], axis=0)
        return dets.select(keep)


def class_signature(class_ids: np.ndarray | Sequence[int]) -> bytes:
    """The multiset of class ids, canonical: per-class counts (``np.bincount``) as bytes."""
    ids = np.asarray(class_ids, dtype=np.int64)
    if ids.size and ids.min() < 0:  # no decoder makes these; sort instead of failing
        return b"-" + np.sort(ids).tobytes()
    return np.bincount(ids).tobytes()


class EventPolicy:
    """every_frame, on_change (the multiset of classes changed), or min_interval_s.

    Stateful: call it for one camera's frames in their order, from one thread at a time."""

    def __init__(self, policy: str | MinIntervalPolicy) -> None:
        self._policy = policy
        self._last_signature: bytes | None = None
        self._last_emit_mono = -float("inf")

    def should_emit(self, class_ids: np.ndarray | Sequence[int], mono: float) -> bool:
        signature = class_signature(class_ids)
        changed = signature != self._last_signature
        self._last_signature = signature
        if not len(class_ids):  # no event for an empty frame, but "gone" counts as a change for on_change
            return False
        if self._policy == "every_frame":
            return True
        if self._policy == "on_change":
            return changed
        assert isinstance(self._policy, MinIntervalPolicy)
        if mono - self._last_emit_mono >= self._policy.min_interval_s:
            self._last_emit_mono = mono
            return True
        return False


def build_outcome(
    *,
    device: str,
    model: str,
    frame: Frame,
    dets: Detections,
    labels: list[str],
    latency_ms: StageTimes,
    batch_size: int,
    emit: bool,
    context: dict[str, object] | None = None,
) -> Outcome:
    """The event JSON (if emitted) and the InfluxDB points: ``inference`` always, ``detections`` with events."""
    ts = frame.wall_ns
    tags = {"device": device, "camera": frame.camera, "model": model}
    fields: dict[str, float | int] = {key: round(latency_ms[stage], 3) for stage, key in _POINT_FIELDS}
    fields["batch_size"] = batch_size
    points = [(ts, format_point("inference", tags, fields, ts))]
    if not emit:
        return Outcome(None, points, dets)
    event = DetectionEvent(
        device=device,
        camera=frame.camera,
        seq=frame.seq,
        wall_ns=ts,
        model=model,
        detections=tuple(dets.to_json(labels)),
        latency=latency_ms,
        batch_size=batch_size,
        context=context or None,
        frame=frame.index,
    )
    by_label: dict[str, list[float]] = {}
    for obj in event.detections:
        by_label.setdefault(obj["label"], []).append(obj["score"])
    for label, scores in sorted(by_label.items()):
        summary = {
            "count": len(scores),
            "max_score": max(scores),
            "mean_score": round(sum(scores) / len(scores), 4),
        }
        points.append((ts, format_point("detections", {**tags, "label": label}, summary, ts)))
    return Outcome(event.row(), points, dets)


class OutcomeBuilder:
    """Every camera's filter, event policy and context series; builds each frame's :class:`Outcome`.

    :meth:`filter` is pure. :meth:`build` advances the camera's event policy: call it for one camera's
    frames in their order, from one thread at a time (the stages guarantee both)."""

    def __init__(
        self,
        cameras: Sequence[CameraConfig],
        *,
        device: str,
        labels: list[str],
        model: str,
        context: ContextLookup | None = None,
    ) -> None:
        self.device, self.labels, self.model = device, labels, model
        self._context = context
        self._filters = {c.name: CameraFilter(c, labels) for c in cameras}
        self._policies = {c.name: EventPolicy(c.events) for c in cameras}
        self._series = {c.name: list(c.context) for c in cameras}

    def filter(self, camera: str, dets: Detections) -> Detections:
        return self._filters[camera](dets)

    def build(self, frame: Frame, dets: Detections, times: StageTimes, batch_size: int) -> Outcome:
        emit = self._policies[frame.camera].should_emit(dets.class_id, frame.mono)
        series = self._series[frame.camera]
        context = self._context(series) if emit and series and self._context else None
        return build_outcome(
            device=self.device,
            model=self.model,
            frame=frame,
            dets=dets,
            labels=self.labels,
            latency_ms=times,
            batch_size=batch_size,
            emit=emit,
            context=context,
        )
