"""From a frame's detections to an event: per-camera filters, zones, the event policy, and the JSON
and InfluxDB points that go to the store."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeinfer.config import CameraConfig, MinIntervalPolicy
from edgeinfer.detect.detections import Detections, label_of
from edgeinfer.lineprotocol import format_point
from edgeinfer.sources.frame import Frame
from edgeinfer.store.sqlite import EventRow
from edgeinfer.timefmt import rfc3339_ms

LATENCY_KEYS = ("e2e", "queue", "preprocess", "inference", "postprocess")


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


class EventPolicy:
    """every_frame, on_change (the multiset of labels changed), or min_interval_s."""

    def __init__(self, policy: str | MinIntervalPolicy) -> None:
        self._policy = policy
        self._last_signature: tuple[tuple[str, int], ...] | None = None
        self._last_emit_mono = -float("inf")

    def should_emit(self, labels: list[str], mono: float) -> bool:
        signature = tuple(sorted(Counter(labels).items()))
        changed = signature != self._last_signature
        self._last_signature = signature
        if not labels:  # no event for an empty frame, but "gone" counts as a change for on_change
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


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one processed frame produces for the store."""

    event: EventRow | None
    points: list[tuple[int, str]]


def build_outcome(
    *,
    device: str,
    model: str,
    frame: Frame,
    dets: Detections,
    labels: list[str],
    latency_ms: dict[str, float],
    batch_size: int,
    emit: bool,
    context: dict[str, Any] | None = None,
) -> Outcome:
    """The event JSON (if emitted) and the InfluxDB points: ``inference`` always, ``detections`` with events."""
    ts = frame.wall_ns
    tags = {"device": device, "camera": frame.camera, "model": model}
    points = [
        (
            ts,
            format_point(
                "inference",
                tags,
                {**{f"{k}_ms": round(latency_ms[k], 3) for k in LATENCY_KEYS}, "batch_size": batch_size},
                ts,
            ),
        )
    ]
    if not emit:
        return Outcome(None, points)
    objects = dets.to_json(labels)
    body: dict[str, Any] = {
        "device": device,
        "camera": frame.camera,
        "seq": frame.seq,
        "ts": rfc3339_ms(ts),
        "model": model,
        "detections": objects,
        "latency_ms": {k: round(latency_ms[k], 3) for k in LATENCY_KEYS},
        "batch_size": batch_size,
    }
    if context:
        body["context"] = context
    by_label: dict[str, list[float]] = {}
    for obj in objects:
        by_label.setdefault(obj["label"], []).append(obj["score"])
    for label, scores in sorted(by_label.items()):
        fields = {
            "count": len(scores),
            "max_score": max(scores),
            "mean_score": round(sum(scores) / len(scores), 4),
        }
        points.append((ts, format_point("detections", {**tags, "label": label}, fields, ts)))
    return Outcome(EventRow(frame.camera, ts, json.dumps(body, separators=(",", ":"))), points)


def labels_of(dets: Detections, labels: list[str]) -> list[str]:
    return [label_of(labels, int(c)) for c in dets.class_id]
