"""A ByteTrack-style multi-object tracker for one camera (Zhang et al., 2022, "ByteTrack: Multi-Object
Tracking by Associating Every Detection Box"), in numpy, with :mod:`~edgeinfer.tracking.kalman` for motion
and :mod:`~edgeinfer.tracking.assign` for the assignment.

Per frame, after every track's box is predicted one frame ahead:

1. detections with ``score >= high_conf`` are matched to the confirmed tracks (those seen last frame and
   those lost for a while), by IoU (``iou``: the least overlap a pair needs);
2. detections with ``low_conf <= score < high_conf`` are matched to the confirmed tracks still unmatched
   that were seen last frame, at a stricter IoU of 0.5: an object whose score dips for a frame (motion
   blur, partial occlusion) keeps its track, while low-score clutter cannot start or steal one;
3. tentative tracks (born, not yet confirmed) are matched to the high-score detections left, at IoU 0.3;
4. a lost track is matched to a high-score detection of its class left over whose centre is within
   ``REACH`` of the track's size from its predicted centre: after an occlusion of more than a few frames
   the predicted box rarely still overlaps the object (it bounced, or stopped behind the occluder);
5. a high-score detection still unmatched starts a tentative track; a tentative track becomes confirmed
   (and gets its id) after ``min_hits`` frames in a row with a detection, and is dropped without a trace
   on its first miss; a confirmed track that misses is *lost* and ends ``max_age_s`` after it was last
   seen.

Association is class-aware without being class-bound: the IoU of a pair whose class differs from the
track's label counts half, so two crossing objects of different classes keep their ids, while a single
object the model calls a circle in one frame and a square in the next still keeps its track. A track's
label is the class with the largest sum of scores over its detections.

Not thread-safe; one instance per camera, fed its frames in order (the outcome builder guarantees both).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgeinfer.detect.detections import Detections
from edgeinfer.tracking.assign import iou_matrix, match
from edgeinfer.tracking.kalman import BoxKalman

LOW_STAGE_IOU = 0.5  # ByteTrack's second association
TENTATIVE_IOU = 0.3  # ByteTrack's association of unconfirmed tracks
OTHER_CLASS_FACTOR = 0.5
REACH = 1.5  # a lost track takes a detection of its class whose centre is within this many of its sizes


@dataclass(frozen=True, slots=True)
class TrackerSettings:
    """The config's ``tracking`` keys; defaults as there (tuned on the bundled model's synthetic scenes)."""

    iou: float = 0.3
    high_conf: float = 0.6
    low_conf: float = 0.1
    min_hits: int = 3
    max_age_s: float = 2.0


@dataclass(slots=True, eq=False)
class Track:
    """One object. ``number`` is 0 until the track is confirmed; then its per-camera serial number."""

    first_t: float
    last_t: float
    box: np.ndarray  # the last matched detection's box, xyxy
    score: float  # the last matched detection's score
    class_id: int
    best_score: float
    best_t: float
    number: int = 0
    hits: int = 1
    missed: int = 0  # frames in a row without a detection (0: seen in this frame)
    votes: dict[int, float] = field(default_factory=dict)

    @property
    def confirmed(self) -> bool:
        return self.number > 0

    def vote(self, class_id: int, score: float) -> None:
        self.votes[class_id] = self.votes.get(class_id, 0.0) + score
        if class_id != self.class_id and self.votes[class_id] > self.votes.get(self.class_id, 0.0):
            self.class_id = class_id


@dataclass(frozen=True, slots=True)
class TrackerStep:
    """One frame's result: per detection, the confirmed track it went to (None: none, or not yet
    confirmed); the confirmed tracks alive now; the confirmed tracks that ended in this frame."""

    det_tracks: list[Track | None]
    tracks: list[Track]
    ended: list[Track]


class ByteTracker:
    def __init__(self, settings: TrackerSettings | None = None) -> None:
        self.settings = settings or TrackerSettings()
        self._kf = BoxKalman()
        self._tracks: list[Track] = []  # row i is the Kalman filter's row i
        self._serial = 0

    @property
    def tracks(self) -> list[Track]:
        """Every confirmed track alive (seen now, or lost for less than max_age_s)."""
        return [t for t in self._tracks if t.confirmed]

    def update(self, dets: Detections, t: float) -> TrackerStep:
        """Advance one frame with its detections, captured at ``t`` seconds (any monotonic clock)."""
        s = self.settings
        kf, tracks = self._kf, self._tracks
        kf.predict()
        n = len(dets)
        det_tracks: list[Track | None] = [None] * n
        taken = np.zeros(n, bool)
        matched_rows: list[np.ndarray] = []
        matched_dets: list[np.ndarray] = []
        if tracks and n:
            predicted = kf.boxes()
            iou = iou_matrix(predicted, dets.xyxy.astype(np.float64))
            labels = np.fromiter((tr.class_id for tr in tracks), np.int64, len(tracks))
            iou *= np.where(labels[:, None] == dets.class_id[None, :], 1.0, OTHER_CLASS_FACTOR)
            confirmed = np.fromiter((tr.number > 0 for tr in tracks), bool, len(tracks))
            was_seen = np.fromiter((tr.missed == 0 for tr in tracks), bool, len(tracks))
            high = dets.confidence >= s.high_conf
            low = ~high & (dets.confidence >= s.low_conf)
            free = np.ones(len(tracks), bool)
            for pool, cand, min_iou in (
                (confirmed, high, s.iou),
                (confirmed & was_seen, low, LOW_STAGE_IOU),
                (~confirmed, high, TENTATIVE_IOU),
            ):
                pool = pool & free
                cand = cand & ~taken
                if not pool.any() or not cand.any():
                    continue
                rows_in, cols_in = np.flatnonzero(pool), np.flatnonzero(cand)
                r, c = match(1.0 - iou[np.ix_(rows_in, cols_in)], 1.0 - min_iou)
                rows, cols = rows_in[r], cols_in[c]
                free[rows] = False
                taken[cols] = True
                matched_rows.append(rows)
                matched_dets.append(cols)
            lost = confirmed & ~was_seen & free
            left = high & ~taken
            if lost.any() and left.any():
                lost_rows, cols_in = np.flatnonzero(lost), np.flatnonzero(left)
                r, c = match(_reach_cost(predicted[lost_rows], labels[lost_rows], dets, cols_in), 1.0)
                rows, cols = lost_rows[r], cols_in[c]
                taken[cols] = True
                matched_rows.append(rows)
                matched_dets.append(cols)
        if matched_rows:
            rows = np.concatenate(matched_rows)
            cols = np.concatenate(matched_dets)
            kf.update(rows, dets.xyxy[cols].astype(np.float64))
            boxes, scores, classes = (
                dets.xyxy[cols],
                dets.confidence[cols].tolist(),
                dets.class_id[cols].tolist(),
            )
            for k, (row, col) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
                tr = tracks[row]
                tr.box, tr.score, tr.last_t = boxes[k], scores[k], t
                tr.missed = 0
                tr.hits += 1
                tr.vote(classes[k], scores[k])
                if scores[k] > tr.best_score:
                    tr.best_score, tr.best_t = scores[k], t
                if not tr.confirmed and tr.hits >= s.min_hits:
                    self._confirm(tr)
                if tr.confirmed:
                    det_tracks[col] = tr
            seen = set(rows.tolist())
        else:
            seen = set()
        keep: list[int] = []
        ended: list[Track] = []
        for row, tr in enumerate(tracks):
            if row not in seen:
                tr.missed += 1
                if not tr.confirmed:
                    continue  # a tentative track that misses was never an object
                if t - tr.last_t > s.max_age_s:
                    ended.append(tr)
                    continue
            keep.append(row)
        if len(keep) != len(tracks):
            kf.keep(np.asarray(keep, np.int64))
            self._tracks = tracks = [tracks[row] for row in keep]
        born = np.flatnonzero(~taken & (dets.confidence >= s.high_conf)) if n else np.zeros(0, np.int64)
        if len(born):
            kf.append(dets.xyxy[born].astype(np.float64))
            for col, box, score, cls in zip(
                born.tolist(),
                dets.xyxy[born],
                dets.confidence[born].tolist(),
                dets.class_id[born].tolist(),
                strict=True,
            ):
                tr = Track(t, t, box, score, cls, score, t, votes={cls: score})
                tracks.append(tr)
                if s.min_hits <= 1:
                    self._confirm(tr)
                    det_tracks[col] = tr
        return TrackerStep(det_tracks, [tr for tr in tracks if tr.confirmed], ended)

    def end_all(self) -> list[Track]:
        """Every confirmed track, ended now (the camera stops); the tracker starts empty again."""
        ended = self.tracks
        self._tracks = []
        self._kf = BoxKalman()
        return ended

    def _confirm(self, tr: Track) -> None:
        self._serial += 1
        tr.number = self._serial


def _reach_cost(predicted: np.ndarray, labels: np.ndarray, dets: Detections, cols: np.ndarray) -> np.ndarray:
    """Lost tracks against detections of their class: the distance between centres over the track's size
    (REACH of it costs 1); other classes cost 2 (never matched)."""
    pc = (predicted[:, :2] + predicted[:, 2:]) / 2
    boxes = dets.xyxy[cols].astype(np.float64)
    dc = (boxes[:, :2] + boxes[:, 2:]) / 2
    size = np.maximum(predicted[:, 2] - predicted[:, 0], predicted[:, 3] - predicted[:, 1])
    dist = np.linalg.norm(pc[:, None, :] - dc[None, :, :], axis=2) / (REACH * np.maximum(size, 1.0))[:, None]
    cost: np.ndarray = np.where(labels[:, None] == dets.class_id[cols][None, :], dist, 2.0)
    return cost
