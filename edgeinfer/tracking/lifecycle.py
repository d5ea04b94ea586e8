"""A camera's objects over time: the tracker's tracks turned into the lifecycle contract.

Per frame (:meth:`CameraLifecycle.step`), for the confirmed tracks:

- ``new`` when a track is confirmed; ``end`` when it ends (lost for ``max_age_s``, or the pipeline stops),
  always, with ``dwell_s``;
- ``update`` when the label or the best score changed, at most every ``update_interval_s`` per track
  (a change inside the interval is sent when it has passed, with the state of that moment);
- ``entered`` / ``left`` when a track's bottom-centre goes into or out of a named zone (with ``zone``);
  these carry the whole object too, so they are also the update for a change of zones;
- ``crossed`` when the bottom-centre's step from one frame to the next crosses a named line (with
  ``line`` and ``direction``: ``in`` onto the right-hand side of the line walked from its first point to
  its second as drawn on screen, e.g. downwards for a line drawn left to right; ``out`` back).

Counts are state: per zone (``all``: the whole frame) and label (``all``: every label), the confirmed
tracks there now, published retained when they change (all of them, zeros too, on the first frame, so
retained counts of a previous run are replaced), and written as ``objects`` points; per line and label
the crossings since the daemon started. Every ended track is a ``tracks`` point.

Everything goes out as rows for the store (the outbox): MQTT messages and line-protocol points.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeinfer.config.schema import ALL, CameraConfig
from edgeinfer.detect.detections import Detections, label_of
from edgeinfer.lineprotocol import format_point
from edgeinfer.sources.frame import Frame
from edgeinfer.store.sqlite import MessageRow
from edgeinfer.timefmt import rfc3339_ms
from edgeinfer.tracking.geometry import Polygon, crosses_segment, foot_points, side_of_line
from edgeinfer.tracking.snapshots import SnapshotStore, snapshot_url
from edgeinfer.tracking.tracker import ByteTracker, Track, TrackerSettings

BEST_SCORE_STEP = 0.01  # a best score this much higher than the last one sent is a change


@dataclass(slots=True, eq=False)
class _Object:
    """What the lifecycle keeps per confirmed track: what was last sent, and where it stands."""

    track: Track
    track_id: str
    zones: frozenset[str]
    sides: dict[str, tuple[float, np.ndarray]]  # per line: the last side (+1/-1) and where it was on it
    sent_mono: float  # when the last new/update went out
    sent_label: int
    sent_best: float
    pending: bool = False  # a change waits for update_interval_s
    best_image: np.ndarray | None = None  # the best-score frame (a reference, not a copy)
    best_box: np.ndarray | None = None
    written_best: float = -1.0  # the best score of the snapshot on disk
    snapshot: str | None = None


@dataclass(frozen=True, slots=True)
class LifecycleStep:
    """A frame's results: per detection its track id (None: not a confirmed track), and the rows."""

    track_ids: list[str | None]
    messages: list[MessageRow] = field(default_factory=list)
    points: list[tuple[int, str]] = field(default_factory=list)


def tracker_settings(camera: CameraConfig) -> TrackerSettings:
    t = camera.tracking
    return TrackerSettings(
        iou=t.iou, high_conf=t.high_conf, low_conf=t.low_conf, min_hits=t.min_hits, max_age_s=t.max_age_s
    )


class CameraLifecycle:
    """One camera's tracker and lifecycle state. Feed it the camera's frames in order, one thread at a time."""

    def __init__(
        self,
        camera: CameraConfig,
        *,
        device: str,
        labels: list[str],
        prefix: str,
        snapshots: SnapshotStore | None = None,
    ) -> None:
        self.camera, self.device, self.labels, self.prefix = camera.name, device, labels, prefix
        self.tracker = ByteTracker(tracker_settings(camera))
        self.update_interval_s = camera.tracking.update_interval_s
        self.snapshots = snapshots if camera.tracking.snapshots else None
        self.snapshot_crop = camera.tracking.snapshot_crop
        self._zones = [
            (
                name,
                Polygon(np.asarray(z.polygon, np.float64)),
                frozenset(z.objects) if z.objects is not None else None,
            )
            for name, z in camera.zones.items()
        ]
        self._lines = [
            (name, np.asarray(p[0], np.float64), np.asarray(p[1], np.float64))
            for name, p in camera.lines.items()
        ]
        labels_here = camera.classes if camera.classes is not None else labels
        self._count_keys = [(ALL, label) for label in (*labels_here, ALL)]
        for name, _, objects in self._zones:
            zone_labels = [x for x in labels_here if objects is None or x in objects]
            self._count_keys += [(name, label) for label in (*zone_labels, ALL)]
        self._count_key_set = set(self._count_keys)
        self._counts: dict[tuple[str, str], int] | None = None  # as last published
        self._crossings: dict[tuple[str, str], list[int]] = {}  # (line, label): [in, out] since start
        self._objects: dict[int, _Object] = {}

    # ----------------------------------------------------------------- per frame

    def step(self, frame: Frame, dets: Detections) -> LifecycleStep:
        result = self.tracker.update(dets, frame.mono)
        out = LifecycleStep([None] * len(dets))
        seen = [tr for tr in result.tracks if tr.missed == 0]
        where = self._where(seen)
        for tr in result.tracks:
            obj = self._objects.get(tr.number)
            if obj is None:
                zones, sides = where.get(tr.number, (frozenset(), {}))
                self._objects[tr.number] = obj = _Object(
                    tr, f"{self.prefix}-{tr.number}", zones, sides, frame.mono, tr.class_id, tr.best_score
                )
                if self.snapshots is not None:  # the best frame may be a tentative one's: take this one
                    obj.best_image, obj.best_box = frame.image, tr.box.copy()
                self._write_snapshot(obj)
                out.messages.append(self._message("new", obj, frame))
                continue
            self._remember_best(obj, frame)
            if tr.number in where:
                self._move(obj, *where[tr.number], frame, out)
            if tr.class_id != obj.sent_label or tr.best_score > obj.sent_best + BEST_SCORE_STEP:
                obj.pending = True
            if obj.pending and frame.mono - obj.sent_mono >= self.update_interval_s:
                self._write_snapshot(obj)
                out.messages.append(self._message("update", obj, frame))
        for col, matched in enumerate(result.det_tracks):
            if matched is not None:
                out.track_ids[col] = f"{self.prefix}-{matched.number}"
        for ended in result.ended:
            self._end(ended, frame, "lost", out)
        self._publish_counts(frame, out)
        return out

    def finish(self, wall_ns: int, mono: float) -> LifecycleStep:
        """The camera stops: every track ends (reason ``stopped``), counts go to zero."""
        out = LifecycleStep([])
        frame = Frame(self.camera, -1, np.zeros((0, 0, 3), np.uint8), wall_ns, mono)
        for tr in self.tracker.end_all():
            self._end(tr, frame, "stopped", out)
        if self._counts is not None:
            self._publish_counts(frame, out)
        return out

    # ----------------------------------------------------------------- parts

    def _where(
        self, tracks: list[Track]
    ) -> dict[int, tuple[frozenset[str], dict[str, tuple[float, np.ndarray]]]]:
        """Per track seen in this frame: the zones its bottom-centre is in, and its side of each line (where
        not on it). One pass over all tracks per zone and per line."""
        if not tracks:
            return {}
        feet = foot_points(np.array([tr.box for tr in tracks], np.float64))
        labels = [label_of(self.labels, tr.class_id) for tr in tracks]
        inside = [(name, polygon.contains(feet), objects) for name, polygon, objects in self._zones]
        sides = [(name, side_of_line(feet, a, b)) for name, a, b in self._lines]
        where = {}
        for k, tr in enumerate(tracks):
            zones = frozenset(
                name
                for name, mask, objects in inside
                if mask[k] and (objects is None or labels[k] in objects)
            )
            where[tr.number] = (
                zones,
                {name: (float(side[k]), feet[k]) for name, side in sides if side[k] != 0},
            )
        return where

    def _move(
        self,
        obj: _Object,
        zones: frozenset[str],
        sides: dict[str, tuple[float, np.ndarray]],
        frame: Frame,
        out: LifecycleStep,
    ) -> None:
        """Zones entered and left, and lines crossed: from the last side of a line the track was on to the
        other side, through the segment (a track on a line has not crossed it yet)."""
        if zones != obj.zones:
            entered, left = sorted(zones - obj.zones), sorted(obj.zones - zones)
            obj.zones = zones
            for name in left:
                out.messages.append(self._message("left", obj, frame, zone=name))
            for name in entered:
                out.messages.append(self._message("entered", obj, frame, zone=name))
        for name, a, b in self._lines:
            now = sides.get(name)
            if now is None:
                continue
            before = obj.sides.get(name)
            if (
                before is not None
                and before[0] != now[0]
                and crosses_segment(before[1][None, :], now[1][None, :], a, b)[0]
            ):
                self._crossed(obj, frame, name, "in" if now[0] > 0 else "out", out)
            obj.sides[name] = now

    def _crossed(self, obj: _Object, frame: Frame, line: str, direction: str, out: LifecycleStep) -> None:
        label = label_of(self.labels, obj.track.class_id)
        totals = self._crossings.setdefault((line, label), [0, 0])
        totals[0 if direction == "in" else 1] += 1
        out.messages.append(self._message("crossed", obj, frame, line=line, direction=direction))
        base = f"{self.camera}/{line}/{label}"
        out.messages.append(
            MessageRow(
                f"{base}/{direction}", str(totals[0 if direction == "in" else 1]), frame.wall_ns, retain=True
            )
        )
        tags = {"device": self.device, "camera": self.camera, "zone": line, "label": label}
        fields = {"crossings_in": totals[0], "crossings_out": totals[1]}
        out.points.append((frame.wall_ns, format_point("objects", tags, fields, frame.wall_ns)))

    def _end(self, tr: Track, frame: Frame, reason: str, out: LifecycleStep) -> None:
        obj = self._objects.pop(tr.number, None)
        if obj is None:  # confirmed and ended in the same frame: never announced, nothing to end
            return
        self._write_snapshot(obj)
        dwell = round(tr.last_t - tr.first_t, 3)
        out.messages.append(self._message("end", obj, frame, dwell_s=dwell, end_reason=reason))
        tags = {"device": self.device, "camera": self.camera, "label": label_of(self.labels, tr.class_id)}
        fields: dict[str, float | int | str] = {
            "dwell_s": dwell,
            "best_score": round(tr.best_score, 4),
            "track_id": obj.track_id,
        }
        out.points.append((frame.wall_ns, format_point("tracks", tags, fields, frame.wall_ns)))

    def _publish_counts(self, frame: Frame, out: LifecycleStep) -> None:
        now: Counter[tuple[str, str]] = Counter()
        for obj in self._objects.values():
            label = label_of(self.labels, obj.track.class_id)
            for zone in (ALL, *obj.zones):
                now[(zone, label)] += 1
                now[(zone, ALL)] += 1
        first = self._counts is None
        published = self._counts or {}
        keys = self._count_keys  # every configured (zone, label); a label the model lacks joins when seen
        extra = [k for k in (*now, *published) if k not in self._count_key_set]
        if extra:
            keys = keys + list(dict.fromkeys(extra))
        for key in keys:
            count = now.get(key, 0)
            if first or published.get(key, 0) != count:
                zone, label = key
                out.messages.append(
                    MessageRow(f"{self.camera}/{zone}/{label}/count", str(count), frame.wall_ns, retain=True)
                )
                tags = {"device": self.device, "camera": self.camera, "zone": zone, "label": label}
                out.points.append(
                    (frame.wall_ns, format_point("objects", tags, {"count": count}, frame.wall_ns))
                )
        self._counts = {k: now.get(k, 0) for k in keys}

    # ----------------------------------------------------------------- snapshots

    def _remember_best(self, obj: _Object, frame: Frame) -> None:
        tr = obj.track
        if self.snapshots is not None and tr.best_t == frame.mono and tr.missed == 0:
            obj.best_image, obj.best_box = frame.image, tr.box.copy()

    def _write_snapshot(self, obj: _Object) -> None:
        if self.snapshots is None or obj.best_image is None or obj.best_box is None:
            return
        if obj.track.best_score <= obj.written_best:
            return
        caption = f"{label_of(self.labels, obj.track.class_id)} {obj.track.best_score:.2f}"
        if self.snapshots.submit(
            self.camera, obj.track_id, obj.best_image, obj.best_box, caption, crop=self.snapshot_crop
        ):
            obj.written_best = obj.track.best_score
            obj.snapshot = snapshot_url(self.camera, obj.track_id)

    # ----------------------------------------------------------------- messages

    def _message(self, kind: str, obj: _Object, frame: Frame, **extra: Any) -> MessageRow:
        tr = obj.track
        offset_ns = frame.wall_ns - frame.mono * 1e9  # capture clock -> wall clock, as of this frame
        body: dict[str, Any] = {
            "type": kind,
            "device": self.device,
            "camera": self.camera,
            "ts": rfc3339_ms(frame.wall_ns),
            "track_id": obj.track_id,
            "label": label_of(self.labels, tr.class_id),
            "class_id": tr.class_id,
            "score": round(tr.score, 4),
            "best_score": round(tr.best_score, 4),
            "box": [round(v, 1) for v in tr.box.tolist()],
            "first_seen": rfc3339_ms(int(offset_ns + tr.first_t * 1e9)),
            "last_seen": rfc3339_ms(int(offset_ns + tr.last_t * 1e9)),
            "zones": sorted(obj.zones),
            "snapshot": obj.snapshot,
            **extra,
        }
        if kind in ("new", "update"):
            obj.sent_mono, obj.sent_label, obj.sent_best, obj.pending = (
                frame.mono,
                tr.class_id,
                tr.best_score,
                False,
            )
        return MessageRow(f"{self.camera}/objects", json.dumps(body, separators=(",", ":")), frame.wall_ns)
