"""The object lifecycle of a camera: new / update / end, zones entered and left, lines crossed, counts as
retained state, the points, and every message valid against schemas/object-event.schema.json."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from edgeinfer.config import CameraConfig
from edgeinfer.detect.detections import Detections
from edgeinfer.sources.frame import Frame
from edgeinfer.store.sqlite import MessageRow
from edgeinfer.tracking.lifecycle import CameraLifecycle
from edgeinfer.tracking.snapshots import SnapshotStore

LABELS = ["circle", "square", "triangle"]
SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "object-event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
T0_NS = 1_800_000_000 * 10**9
IMAGE = np.zeros((480, 640, 3), np.uint8)


def frame(i: int) -> Frame:
    return Frame("dock", i, IMAGE, T0_NS + i * 100_000_000, 1000.0 + i / 10, i)


def box(cx: float, bottom: float, score: float = 0.9, cls: int = 0) -> tuple[float, float, float, int]:
    return cx, bottom, score, cls


def dets(*objects: tuple[float, float, float, int]) -> Detections:
    """Detections from (cx, bottom, score, class): 40x40 boxes whose bottom-centre is (cx, bottom)."""
    if not objects:
        return Detections.empty()
    xyxy = np.array([[cx - 20, b - 40, cx + 20, b] for cx, b, _, _ in objects], np.float32)
    return Detections(
        xyxy, np.array([o[2] for o in objects], np.float32), np.array([o[3] for o in objects], np.int64)
    )


def camera(**overrides: object) -> CameraConfig:
    base: dict[str, object] = {
        "name": "dock",
        "source": 0,
        "zones": {"bay": [[300, 0], [640, 0], [640, 480], [300, 480]]},
        "lines": {"gate": [[200, 0], [200, 480]]},
        "tracking": {"min_hits": 1, "update_interval_s": 0.5},
    }
    return CameraConfig.model_validate({**base, **overrides})


def lifecycle(cam: CameraConfig | None = None, snapshots: SnapshotStore | None = None) -> CameraLifecycle:
    return CameraLifecycle(cam or camera(), device="edge-01", labels=LABELS, prefix="7", snapshots=snapshots)


def objects(rows: list[MessageRow]) -> list[dict]:
    out = []
    for row in rows:
        if row.topic == "dock/objects":
            doc = json.loads(row.body)
            VALIDATOR.validate(doc)
            assert row.retain is False
            out.append(doc)
    return out


def counts(rows: list[MessageRow]) -> dict[str, str]:
    found = {}
    for row in rows:
        if row.topic.endswith(("/count", "/in", "/out")):
            assert row.retain is True
            found[row.topic] = row.body
    return found


def test_one_object_walking_right_new_zone_line_end_and_counts():
    lc = lifecycle()
    messages: list[MessageRow] = []
    points: list[str] = []
    ids = []
    for i in range(30):  # 100 -> 390 px: crosses the gate at x=200 (frame 10), enters the bay at x=300
        step = lc.step(frame(i), dets(box(100 + 10 * i, 300)))
        messages += step.messages
        points += [p for _, p in step.points]
        ids.append(step.track_ids)
    for i in range(30, 52):  # gone: ends after max_age_s (2 s)
        step = lc.step(frame(i), Detections.empty())
        messages += step.messages
        points += [p for _, p in step.points]
    assert {tuple(x) for x in ids} == {("7-1",)}
    docs = objects(messages)
    kinds = [d["type"] for d in docs]
    assert kinds == ["new", "crossed", "entered", "end"]
    new, crossed, entered, end = docs
    assert new["track_id"] == end["track_id"] == "7-1"
    assert new["label"] == "circle" and new["zones"] == [] and new["snapshot"] is None
    assert crossed["line"] == "gate" and crossed["direction"] == "out"  # rightwards over a line drawn down
    assert entered["zone"] == "bay" and entered["zones"] == ["bay"]
    assert end["end_reason"] == "lost" and end["dwell_s"] == pytest.approx(2.9)
    assert end["first_seen"] == "2027-01-15T08:00:00.000Z" and end["last_seen"] == "2027-01-15T08:00:02.900Z"
    final = counts(messages)
    assert final["dock/all/circle/count"] == "0" and final["dock/bay/circle/count"] == "0"
    assert final["dock/gate/circle/out"] == "1"
    assert any(
        p.startswith("tracks,camera=dock,device=edge-01,label=circle ") and "dwell_s=2.9" in p for p in points
    )
    assert any(p.startswith("objects,camera=dock,device=edge-01,label=circle,zone=gate ") for p in points)
    assert any("crossings_in=0i,crossings_out=1i" in p for p in points)


def test_counts_are_published_whole_on_the_first_frame_then_only_changes():
    lc = lifecycle()
    first = counts(lc.step(frame(0), Detections.empty()).messages)
    # every label and "all", in the whole frame and in the zone, zeros included (replaces a previous run's)
    assert first == {
        f"dock/{zone}/{label}/count": "0" for zone in ("all", "bay") for label in (*LABELS, "all")
    }
    two = lc.step(frame(1), dets(box(100, 300), box(400, 300, cls=1))).messages
    assert counts(two) == {
        "dock/all/circle/count": "1",
        "dock/all/square/count": "1",
        "dock/all/all/count": "2",
        "dock/bay/square/count": "1",
        "dock/bay/all/count": "1",
    }
    assert counts(lc.step(frame(2), dets(box(101, 300), box(401, 300, cls=1))).messages) == {}


def test_zone_objects_limit_what_a_zone_counts():
    cam = camera(
        zones={"bay": {"polygon": [[300, 0], [640, 0], [640, 480], [300, 480]], "objects": ["square"]}}
    )
    lc = lifecycle(cam)
    rows = lc.step(frame(0), dets(box(400, 300, cls=0), box(500, 300, cls=1))).messages
    c = counts(rows)
    assert (
        "dock/bay/circle/count" not in c
        and c["dock/bay/square/count"] == "1"
        and c["dock/bay/all/count"] == "1"
    )
    new = {d["label"]: d["zones"] for d in objects(rows)}
    assert new == {"circle": [], "square": ["bay"]}


def test_update_on_label_change_at_most_every_update_interval():
    lc = lifecycle()
    docs = []
    classes = [0, 0, 1, 1, 1, 1, 1, 1, 1, 1]  # the vote turns to square on frame 4
    for i, c in enumerate(classes):
        docs += objects(lc.step(frame(i), dets(box(100, 100 + i, cls=c))).messages)
    updates = [d for d in docs if d["type"] == "update"]
    assert [d["label"] for d in updates] == ["square"]
    assert updates[0]["ts"] == "2027-01-15T08:00:00.500Z"  # not before update_interval_s (0.5 s) after new


def test_a_better_score_is_an_update_but_not_every_tiny_change():
    lc = lifecycle()
    docs = []
    scores = [0.7, 0.705, 0.71, 0.7, 0.7, 0.7, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95]
    for i, s in enumerate(scores):
        docs += objects(lc.step(frame(i), dets(box(100, 100, score=s))).messages)
    updates = [d for d in docs if d["type"] == "update"]
    assert [d["best_score"] for d in updates] == [pytest.approx(0.95)]


def test_crossing_leftwards_counts_in_and_a_line_only_counts_within_its_segment():
    lc = lifecycle(camera(lines={"gate": [[200, 0], [200, 200]]}))
    docs = []
    for i in range(12):  # bottom-centre at y=150: inside the segment's span
        docs += objects(lc.step(frame(i), dets(box(300 - 20 * i, 150))).messages)
    lc2 = lifecycle(camera(lines={"gate": [[200, 0], [200, 200]]}))
    for i in range(12):  # at y=400: below the segment's end, no crossing
        assert not [
            d
            for d in objects(lc2.step(frame(i), dets(box(300 - 20 * i, 400))).messages)
            if d["type"] == "crossed"
        ]
    crossed = [d for d in docs if d["type"] == "crossed"]
    assert [d["direction"] for d in crossed] == ["in"]


def test_finish_ends_every_track_as_stopped_and_zeroes_the_counts():
    lc = lifecycle()
    lc.step(frame(0), dets(box(100, 300), box(400, 300)))
    done = lc.finish(T0_NS + 10**9, 1001.0)
    docs = objects(done.messages)
    assert sorted(d["track_id"] for d in docs) == ["7-1", "7-2"]
    assert {d["type"] for d in docs} == {"end"} and {d["end_reason"] for d in docs} == {"stopped"}
    assert counts(done.messages)["dock/all/all/count"] == "0"


def test_unconfirmed_detections_have_no_track_id_and_low_scores_never_start_one():
    lc = lifecycle(camera(tracking={"min_hits": 2}))
    assert lc.step(frame(0), dets(box(100, 300), box(400, 300, score=0.3))).track_ids == [None, None]
    assert lc.step(frame(1), dets(box(102, 300), box(402, 300, score=0.3))).track_ids == ["7-1", None]


def test_snapshots_are_written_and_referenced(tmp_path):
    store = SnapshotStore(tmp_path, max_bytes=10 * 2**20, retention_s=3600)
    lc = lifecycle(snapshots=store)
    image = np.full((480, 640, 3), 80, np.uint8)
    docs = []
    for i, s in enumerate([0.7, 0.8, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]):
        f = Frame("dock", i, image, T0_NS + i * 10**8, 1000.0 + i / 10, i)
        docs += objects(lc.step(f, dets(box(100 + i, 300, score=s))).messages)
    docs += objects(lc.finish(T0_NS + 10**9, 1001.0).messages)
    assert store.flush()
    store.close()
    assert docs[0]["snapshot"] == "/api/snapshots/dock/7-1.jpg"
    assert docs[-1]["type"] == "end" and docs[-1]["snapshot"] == "/api/snapshots/dock/7-1.jpg"
    jpeg = store.read("dock", "7-1")
    assert jpeg is not None and jpeg[:2] == b"\xff\xd8"
    assert store.read("dock", "../7-1") is None and store.read("dock", "7-1/../x") is None


def test_tracking_off_camera_has_no_lifecycle_in_the_outcome_builder():
    from edgeinfer.pipeline.outcomes import OutcomeBuilder
    from edgeinfer.pipeline.types import StageTimes

    builder = OutcomeBuilder(
        [camera(tracking={"enabled": False}, events="every_frame")], device="d", labels=LABELS, model="m"
    )
    outcome = builder.build(frame(0), dets(box(100, 300)), StageTimes(0, 0, 0, 0, 0), 1)
    assert outcome.messages == ()
    assert outcome.event is not None and "track_id" not in json.loads(outcome.event.body)["detections"][0]


def test_edgeinfer_events_shows_the_track_of_a_detection():
    from edgeinfer.commands.events import format_detections

    doc = {
        "detections": [
            {"label": "square", "score": 0.912, "track_id": "3-17"},
            {"label": "circle", "score": 0.5},
        ]
    }
    assert format_detections(doc) == "square 0.91 #3-17, circle 0.50"
    doc["detections"][0]["track_id"] = None
    assert format_detections(doc) == "square 0.91, circle 0.50"
