"""From a frame's detections to an outcome: per-camera filters and zones, tracking and the object
lifecycle (:mod:`edgeinfer.tracking`), the event policy, and the event JSON, InfluxDB points and MQTT
messages that go to the store. :class:`OutcomeBuilder` holds the per-camera parts; the stages call it on a
worker thread, never on the event loop."""

from __future__ import annotations

import time
from collections import deque
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
    TrackedDetections,
)
from edgeinfer.sources.frame import Frame
from edgeinfer.timefmt import rfc3339_ms
from edgeinfer.tracking.geometry import Polygon, foot_points, points_in_polygon
from edgeinfer.tracking.lifecycle import CameraLifecycle
from edgeinfer.tracking.snapshots import SnapshotStore

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
TRACKING_SAMPLES = 10_000  # the builder keeps this many per-frame tracking times (benchmarks read them)


class CameraFilter:
    """Class allow-list, per-class minimum scores and filter zones (bottom-centre of the box inside one of
    the polygons; the old list form of ``zones``, or named zones with ``filter: true``)."""

    def __init__(self, camera: CameraConfig, labels: list[str]) -> None:
        self._allowed = None
        if camera.classes is not None:
            self._allowed = np.array([label in camera.classes for label in labels], dtype=bool)
        self._min_score = np.zeros(len(labels), np.float32)
        for label, score in camera.min_score.items():
            if label in labels:
                self._min_score[labels.index(label)] = score
        self._zones = [Polygon(np.asarray(z.polygon, np.float64)) for z in camera.zones.values() if z.filter]
        self.passthrough = self._allowed is None and not camera.min_score and not self._zones

    def __call__(self, dets: Detections) -> Detections:
        if self.passthrough or len(dets) == 0:
            return dets
        cls = np.clip(dets.class_id, 0, len(self._min_score) - 1)
        keep = dets.confidence >= self._min_score[cls]
        if self._allowed is not None:
            keep &= self._allowed[cls] & (dets.class_id < len(self._allowed))
        if self._zones:
            foot = foot_points(dets.xyxy)
            keep &= np.any([zone.contains(foot) for zone in self._zones], axis=0)
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
    track_ids: Sequence[str | None] | None = None,
) -> Outcome:
    """The event JSON (if emitted) and the InfluxDB points: ``inference`` always, ``detections`` with events.
    ``track_ids``: per detection, for a tracking camera (each detection gains ``track_id``)."""
    ts = frame.wall_ns
    tags = {"device": device, "camera": frame.camera, "model": model}
    fields: dict[str, float | int] = {key: round(latency_ms[stage], 3) for stage, key in _POINT_FIELDS}
    fields["batch_size"] = batch_size
    points = [(ts, format_point("inference", tags, fields, ts))]
    if not emit:
        return Outcome(None, points, detections=dets)
    event = DetectionEvent(
        device=device,
        camera=frame.camera,
        seq=frame.seq,
        wall_ns=ts,
        model=model,
        detections=tuple(_with_track_ids(dets.to_json(labels), track_ids)),
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
    return Outcome(event.row(), points, detections=dets)


def _with_track_ids(
    objects: list[dict[str, object]], track_ids: Sequence[str | None] | None
) -> list[dict[str, object]]:
    if track_ids is not None:
        for obj, track_id in zip(objects, track_ids, strict=True):
            obj["track_id"] = track_id
    return objects


class OutcomeBuilder:
    """Every camera's filter, tracking, event policy and context series; builds each frame's :class:`Outcome`.

    :meth:`filter` is pure. :meth:`build` advances the camera's tracker and event policy: call it for one
    camera's frames in their order, from one thread at a time (the stages guarantee both).

    ``conf``: events report detections from this score on (the detector may keep lower ones for the
    trackers: :func:`edgeinfer.tracking.decoder_conf`). ``track_prefix``: the first part of every track id
    (the daemon's boot count, so ids never repeat across restarts; default: the time in seconds)."""

    def __init__(
        self,
        cameras: Sequence[CameraConfig],
        *,
        device: str,
        labels: list[str],
        model: str,
        context: ContextLookup | None = None,
        conf: float | None = None,
        track_prefix: str | None = None,
        snapshots: SnapshotStore | None = None,
    ) -> None:
        self.device, self.labels, self.model = device, labels, model
        self._context = context
        self._conf = conf
        prefix = track_prefix if track_prefix is not None else str(int(time.time()))
        self._lifecycles = {
            c.name: CameraLifecycle(c, device=device, labels=labels, prefix=prefix, snapshots=snapshots)
            for c in cameras
            if c.tracking.enabled
        }
        self.tracking_ms: deque[float] = deque(maxlen=TRACKING_SAMPLES)  # per frame of a tracking camera
        self._filters = {c.name: CameraFilter(c, labels) for c in cameras}
        self._policies = {c.name: EventPolicy(c.events) for c in cameras}
        self._series = {c.name: list(c.context) for c in cameras}

    def filter(self, camera: str, dets: Detections) -> Detections:
        return self._filters[camera](dets)

    def build(self, frame: Frame, dets: Detections, times: StageTimes, batch_size: int) -> Outcome:
        track_ids: list[str | None] | None = None
        lifecycle = self._lifecycles.get(frame.camera)
        step = None
        if lifecycle is not None:
            start = time.perf_counter()
            step = lifecycle.step(frame, dets)
            self.tracking_ms.append((time.perf_counter() - start) * 1e3)
            track_ids = step.track_ids
        if self._conf is not None and len(dets):
            keep = dets.confidence >= self._conf
            if not keep.all():
                dets = dets.select(keep)
                if track_ids is not None:
                    track_ids = [track_ids[i] for i in np.flatnonzero(keep).tolist()]
        emit = self._policies[frame.camera].should_emit(dets.class_id, frame.mono)
        series = self._series[frame.camera]
        context = self._context(series) if emit and series and self._context else None
        outcome = build_outcome(
            device=self.device,
            model=self.model,
            frame=frame,
            dets=dets,
            labels=self.labels,
            latency_ms=times,
            batch_size=batch_size,
            emit=emit,
            context=context,
            track_ids=track_ids,
        )
        if step is None:
            return outcome
        tracked = TrackedDetections(dets.xyxy, dets.confidence, dets.class_id, tuple(track_ids or ()))
        return Outcome(outcome.event, outcome.points + step.points, step.messages, tracked)

    def finish(self) -> list[Outcome]:
        """The pipeline stops: every camera's tracks end and its counts go to zero (call it after the last
        :meth:`build`, from the same thread or once those are done)."""
        wall_ns, mono = time.time_ns(), time.monotonic()
        outcomes = []
        for lifecycle in self._lifecycles.values():
            step = lifecycle.finish(wall_ns, mono)
            if step.messages or step.points:
                outcomes.append(Outcome(None, step.points, step.messages))
        return outcomes
