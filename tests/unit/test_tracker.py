"""The tracker on hand-built detection sequences: ids kept, or changed, exactly where they should be."""

from __future__ import annotations

import numpy as np
import pytest

from edgeinfer.detect.detections import Detections
from edgeinfer.tracking.assign import _distinct_cheapest, iou_matrix, match
from edgeinfer.tracking.kalman import BoxKalman
from edgeinfer.tracking.tracker import ByteTracker, TrackerSettings

FPS = 10.0


def dets(*objects: tuple[float, float, float, int]) -> Detections:
    """Detections from (cx, cy, score, class) with 40x40 boxes."""
    if not objects:
        return Detections.empty()
    xyxy = np.array([[cx - 20, cy - 20, cx + 20, cy + 20] for cx, cy, _, _ in objects], np.float32)
    return Detections(
        xyxy,
        np.array([s for _, _, s, _ in objects], np.float32),
        np.array([c for _, _, _, c in objects], np.int64),
    )


def run(frames: list[Detections], settings: TrackerSettings | None = None) -> list[list[int | None]]:
    """Per frame, per detection: the number of the confirmed track it went to (None: none)."""
    tracker = ByteTracker(settings or TrackerSettings(min_hits=1))
    out = []
    for i, frame in enumerate(frames):
        step = tracker.update(frame, i / FPS)
        out.append([t.number if t is not None else None for t in step.det_tracks])
    return out


def test_one_object_moving_keeps_its_id():
    ids = run([dets((100 + 8 * i, 100, 0.9, 0)) for i in range(20)])
    assert ids == [[1]] * 20


def test_min_hits_confirms_a_track_on_its_third_frame_in_a_row():
    ids = run([dets((100 + 5 * i, 100, 0.9, 0)) for i in range(5)], TrackerSettings(min_hits=3))
    assert ids == [[None], [None], [1], [1], [1]]


def test_a_single_frame_false_positive_never_becomes_a_track():
    frames = [dets((100, 100, 0.9, 0))] + [Detections.empty()] * 3 + [dets((400, 300, 0.9, 1))] * 3
    ids = run(frames, TrackerSettings(min_hits=2))
    assert ids == [[None], [], [], [], [None], [1], [1]]  # the first one got no number at all


def test_a_missed_frame_keeps_the_id():
    frames = [dets((100 + 10 * i, 100, 0.9, 0)) for i in range(5)]
    frames += [Detections.empty()]  # frame 5: the detector missed it
    frames += [dets((100 + 10 * i, 100, 0.9, 0)) for i in range(6, 10)]
    ids = run(frames)
    assert ids[4] == [1] and ids[5] == [] and ids[6:] == [[1]] * 4


def test_a_low_score_frame_keeps_the_id_through_the_second_stage():
    scores = [0.9] * 5 + [0.2] + [0.9] * 4  # dips below high_conf (and below detector.conf) for a frame
    ids = run([dets((100 + 10 * i, 100, s, 0)) for i, s in enumerate(scores)])
    assert ids == [[1]] * 10


def test_a_low_score_detection_never_starts_a_track():
    ids = run([dets((300, 300, 0.3, 0))] * 5)
    assert ids == [[None]] * 5


def test_a_low_score_detection_does_not_revive_a_lost_track():
    # ByteTrack's second stage only continues tracks seen in the previous frame
    frames = [dets((100 + 10 * i, 100, 0.9, 0)) for i in range(4)] + [Detections.empty()]
    frames += [dets((150, 100, 0.3, 0))]
    ids = run(frames)
    assert ids[-1] == [None]


def test_crossing_objects_keep_their_ids():
    # two boxes of different classes moving towards each other, overlapping, and apart again
    frames = [dets((100 + 10 * i, 200, 0.9, 0), (300 - 10 * i, 205, 0.9, 1)) for i in range(21)]
    ids = run(frames)
    first = ids[0]
    assert sorted(first) == [1, 2]
    assert all(frame == first for frame in ids), ids


def test_crossing_objects_of_one_class_keep_their_ids_by_motion():
    frames = [dets((100 + 10 * i, 200, 0.9, 0), (300 - 10 * i, 215, 0.9, 0)) for i in range(21)]
    ids = run(frames)
    assert all(frame == ids[0] for frame in ids), ids


def test_an_occlusion_shorter_than_max_age_keeps_the_id():
    frames = [dets((100 + 10 * i, 100, 0.9, 0)) for i in range(5)]
    frames += [Detections.empty()] * 8  # 0.8 s hidden, still moving
    frames += [dets((100 + 10 * i, 100, 0.9, 0)) for i in range(13, 18)]
    ids = run(frames, TrackerSettings(min_hits=1, max_age_s=2.0))
    assert ids[-5:] == [[1]] * 5


def test_an_occlusion_longer_than_max_age_ends_the_track_and_a_new_id_follows():
    tracker = ByteTracker(TrackerSettings(min_hits=1, max_age_s=1.0))
    for i in range(5):
        tracker.update(dets((100 + 10 * i, 100, 0.9, 0)), i / FPS)
    ended = []
    for i in range(5, 17):  # hidden for 1.2 s
        ended += tracker.update(Detections.empty(), i / FPS).ended
    assert [t.number for t in ended] == [1]
    step = tracker.update(dets((270, 100, 0.9, 0)), 17 / FPS)
    assert [t.number for t in step.det_tracks if t] == [2]


def test_a_lost_track_is_found_again_near_where_it_was_predicted():
    # the object stops behind an occluder: the predicted box runs on, the proximity stage finds it
    frames = [dets((100 + 12 * i, 100, 0.9, 0)) for i in range(6)]
    frames += [Detections.empty()] * 6
    frames += [dets((175, 100, 0.9, 0))] * 3
    ids = run(frames, TrackerSettings(min_hits=1, max_age_s=2.0))
    assert ids[-1] == [1]


def test_the_label_is_the_class_with_the_largest_score_sum():
    tracker = ByteTracker(TrackerSettings(min_hits=1))
    classes = [0, 0, 1, 0, 1, 1, 1, 1]
    for i, c in enumerate(classes):
        step = tracker.update(dets((100 + 5 * i, 100, 0.9, c)), i / FPS)
    assert [t.class_id for t in step.tracks] == [1]
    assert len({t.number for t in step.tracks}) == 1


def test_end_all_returns_every_confirmed_track():
    tracker = ByteTracker(TrackerSettings(min_hits=1))
    tracker.update(dets((100, 100, 0.9, 0), (400, 300, 0.9, 1)), 0.0)
    assert sorted(t.number for t in tracker.end_all()) == [1, 2]
    assert tracker.tracks == []


def test_iou_matrix_and_gated_assignment():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    b = np.array([[0, 0, 10, 5], [100, 100, 110, 110]], float)
    iou = iou_matrix(a, b)
    assert iou == pytest.approx(np.array([[0.5, 0.0], [0.0, 0.0]]))
    rows, cols = match(1 - iou, 0.6)
    assert rows.tolist() == [0] and cols.tolist() == [0]


def test_kalman_learns_a_constant_velocity():
    kf = BoxKalman()
    kf.append(np.array([[0, 0, 40, 40]], float))
    for i in range(1, 15):
        kf.predict()
        kf.update(np.array([0]), np.array([[5 * i, 0, 40 + 5 * i, 40]], float))
    assert kf.velocity[0, 0] == pytest.approx(5.0, abs=0.3)
    kf.predict()
    assert kf.boxes()[0, 0] == pytest.approx(75.0, abs=1.0)


def _solver(cost: np.ndarray, max_cost: float) -> tuple[list[int], list[int]]:
    """The Jonker-Volgenant solver alone, as match() ran before its shortcut."""
    import lap

    _, row_to_col, _ = lap.lapjv(cost, extend_cost=True, cost_limit=max_cost + 1e-9)
    rows = np.flatnonzero(row_to_col >= 0)
    cols = row_to_col[rows]
    ok = cost[rows, cols] <= max_cost
    return rows[ok].tolist(), cols[ok].tolist()


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (4, 6), (6, 4), (8, 8), (2, 9), (9, 2)])
def test_match_equals_the_solver_with_and_without_its_shortcut(shape: tuple[int, int]) -> None:
    """Random scenes of boxes near tracks (the shortcut's case) and crowded ones (the solver's): the
    pairs are the solver's in every one."""
    rng = np.random.default_rng(shape[0] * 10 + shape[1])
    shortcut = 0
    for trial in range(300):
        spread = 20.0 if trial % 2 else 200.0  # sparse scenes, then crowded ones where tracks compete
        tracks = rng.uniform(0, spread, (shape[0], 2))
        found = tracks[rng.permutation(shape[0])[: shape[1]]] if shape[1] <= shape[0] else None
        if found is None:
            found = np.concatenate([tracks, rng.uniform(0, spread, (shape[1] - shape[0], 2))])
        found = found + rng.normal(0, 3, found.shape)
        a = np.concatenate([tracks, tracks + 30], axis=1)
        b = np.concatenate([found, found + 30], axis=1)
        cost = 1.0 - iou_matrix(a, b)
        rows, cols = match(cost, 0.7)
        assert (rows.tolist(), cols.tolist()) == _solver(cost, 0.7), (trial, cost)
        shortcut += _distinct_cheapest(cost, 0.7) is not None
    assert shortcut > 0
    assert shortcut < 300 or min(shape) == 1  # both paths were taken (one row or column: always the shortcut)
