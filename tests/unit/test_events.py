"""Per-camera filters, zones, event policies, and the event / point shapes."""

import json
from pathlib import Path

import numpy as np
import pytest

from edgeinfer.config import CameraConfig, MinIntervalPolicy
from edgeinfer.detect.detections import Detections
from edgeinfer.pipeline.outcomes import (
    CameraFilter,
    EventPolicy,
    build_outcome,
    points_in_polygon,
    rfc3339_ms,
)
from edgeinfer.pipeline.types import StageTimes
from edgeinfer.sources.frame import Frame

LABELS = ["circle", "square", "triangle"]


def dets(*rows):
    """rows: (x1, y1, x2, y2, score, class)"""
    a = np.array(rows, np.float32).reshape(-1, 6)
    return Detections(a[:, :4], a[:, 4], a[:, 5].astype(np.int64))


def camera(**kw):
    return CameraConfig(name="dock", source=0, **kw)


def test_allow_list_and_per_class_min_score():
    f = CameraFilter(camera(classes=["circle", "square"], min_score={"square": 0.6}), LABELS)
    out = f(dets((0, 0, 1, 1, 0.5, 0), (0, 0, 1, 1, 0.5, 1), (0, 0, 1, 1, 0.7, 1), (0, 0, 1, 1, 0.9, 2)))
    assert out.class_id.tolist() == [0, 1] and out.confidence.tolist() == pytest.approx([0.5, 0.7])


def test_zone_keeps_boxes_whose_bottom_centre_is_inside():
    zone = [(0, 0), (100, 0), (100, 100), (0, 100)]
    f = CameraFilter(camera(zones=[zone]), LABELS)
    out = f(dets((10, 10, 30, 90, 0.9, 0), (10, 10, 30, 150, 0.9, 0), (150, 10, 170, 50, 0.9, 1)))
    assert len(out) == 1 and out.xyxy[0, 3] == 90


@pytest.mark.parametrize(
    ("point", "inside"), [((3, 3), True), ((15, 5), False), ((5, 15), False), ((8, 1), True), ((6, 6), False)]
)
def test_point_in_triangle(point, inside):
    triangle = np.array([(0, 0), (10, 0), (0, 10)], float)
    assert points_in_polygon(np.array([point], float), triangle).tolist() == [inside]


def test_on_change_emits_when_the_class_multiset_changes():
    p = EventPolicy("on_change")
    circle, square = 0, 1
    seen = [
        p.should_emit(np.array(ids, np.int64), i)
        for i, ids in enumerate(
            [[circle], [circle], [circle, square], [square, circle], [], [square, circle]]
        )
    ]
    assert seen == [True, False, True, False, False, True]


def test_on_change_counts_each_class():
    p = EventPolicy("on_change")
    seen = [p.should_emit(ids, 0) for ids in ([2], [2, 2], [2, 2], [0, 2], [2, 0], [7], [7, 0], [0, 7])]
    assert seen == [True, True, False, True, False, True, True, False]


def test_every_frame_skips_only_empty_frames():
    p = EventPolicy("every_frame")
    assert [p.should_emit(x, 0) for x in ([0], [], [0])] == [True, False, True]


def test_min_interval_rate_limits():
    p = EventPolicy(MinIntervalPolicy(min_interval_s=5))
    assert [p.should_emit([0], t) for t in (0, 1, 4.9, 5.0, 6, 10.5)] == [
        True,
        False,
        False,
        True,
        False,
        True,
    ]


def test_event_and_points_follow_the_contract():
    frame = Frame("dock", 42, np.zeros((4, 4, 3), np.uint8), 1_764_201_600_123_456_789, 0.0)
    latency = StageTimes(e2e=12.5, queue=1.0, preprocess=2.0, inference=8.0, postprocess=1.5)
    outcome = build_outcome(
        device="edge-01",
        model="shapes-s_int8",
        frame=frame,
        labels=LABELS,
        latency_ms=latency,
        dets=dets((1, 2, 30, 40, 0.9, 0), (5, 5, 9, 9, 0.5, 0), (50, 50, 60, 60, 0.7, 2)),
        batch_size=3,
        emit=True,
        context={"sensors/dock/temp": 21.5},
    )
    event = json.loads(outcome.event.body)
    assert event["ts"] == "2025-11-27T00:00:00.123Z" == rfc3339_ms(frame.wall_ns)
    assert (event["device"], event["camera"], event["seq"], event["model"], event["batch_size"]) == (
        "edge-01",
        "dock",
        42,
        "shapes-s_int8",
        3,
    )
    assert event["detections"][0] == {
        "label": "circle",
        "class_id": 0,
        "score": 0.9,
        "box": [1.0, 2.0, 30.0, 40.0],
    }
    assert set(event["latency_ms"]) == {"e2e", "queue", "preprocess", "inference", "postprocess"}
    assert event["context"] == {"sensors/dock/temp": 21.5}
    lines = [line for _, line in outcome.points]
    assert lines[0].startswith("inference,camera=dock,device=edge-01,model=shapes-s_int8 e2e_ms=12.5,")
    assert lines[0].endswith(" 1764201600123456789") and "batch_size=3i" in lines[0]
    assert (
        "detections,camera=dock,device=edge-01,label=circle,model=shapes-s_int8 count=2i,max_score=0.9,mean_score=0.7"
        in lines[1]
    )
    assert lines[2].startswith("detections,camera=dock,device=edge-01,label=triangle,")


def test_not_emitted_frame_still_records_inference_point():
    frame = Frame("dock", 1, np.zeros((4, 4, 3), np.uint8), 10, 0.0)
    latency = StageTimes(e2e=1.0, queue=1.0, preprocess=1.0, inference=1.0, postprocess=1.0)
    outcome = build_outcome(
        device="d",
        model="m",
        frame=frame,
        dets=Detections.empty(),
        labels=LABELS,
        latency_ms=latency,
        batch_size=1,
        emit=False,
    )
    assert outcome.event is None and len(outcome.points) == 1


def test_event_json_is_byte_for_byte_the_contract():
    """The typed DetectionEvent serialises exactly as the hand-built dict did (key order, rounding)."""
    frame = Frame("dock", 42, np.zeros((4, 4, 3), np.uint8), 1_764_201_600_123_456_789, 0.0)
    latency = StageTimes(e2e=12.34567, queue=1.00049, preprocess=2.0, inference=8.123456, postprocess=1.5)
    outcome = build_outcome(
        device="edge-01",
        model="m",
        frame=frame,
        labels=LABELS,
        latency_ms=latency,
        dets=dets(
            (1, 2, 30, 40, 0.9, 0),
            (5, 5, 9, 9, 0.5, 0),
            (50, 50, 60, 60, 0.7, 2),
            (1.23456, 2.3456, 3.4567, 4.56789, 0.123456, 5),
        ),
        batch_size=3,
        emit=True,
        context={"sensors/dock/temp": 21.5},
    )
    assert outcome.event.body == (
        '{"device":"edge-01","camera":"dock","seq":42,"ts":"2025-11-27T00:00:00.123Z","model":"m",'
        '"detections":[{"label":"circle","class_id":0,"score":0.9,"box":[1.0,2.0,30.0,40.0]},'
        '{"label":"circle","class_id":0,"score":0.5,"box":[5.0,5.0,9.0,9.0]},'
        '{"label":"triangle","class_id":2,"score":0.7,"box":[50.0,50.0,60.0,60.0]},'
        '{"label":"class5","class_id":5,"score":0.1235,"box":[1.2,2.3,3.5,4.6]}],'
        '"latency_ms":{"e2e":12.346,"queue":1.0,"preprocess":2.0,"inference":8.123,"postprocess":1.5},'
        '"batch_size":3,"context":{"sensors/dock/temp":21.5}}'
    )
    assert (outcome.event.camera, outcome.event.ts_ns) == ("dock", frame.wall_ns)
    assert [line for _, line in outcome.points] == [
        "inference,camera=dock,device=edge-01,model=m e2e_ms=12.346,queue_ms=1.0,preprocess_ms=2.0,"
        "inference_ms=8.123,postprocess_ms=1.5,batch_size=3i 1764201600123456789",
        "detections,camera=dock,device=edge-01,label=circle,model=m count=2i,max_score=0.9,mean_score=0.7 "
        "1764201600123456789",
        "detections,camera=dock,device=edge-01,label=class5,model=m count=1i,max_score=0.1235,"
        "mean_score=0.1235 1764201600123456789",
        "detections,camera=dock,device=edge-01,label=triangle,model=m count=1i,max_score=0.7,mean_score=0.7 "
        "1764201600123456789",
    ]


def test_event_validates_against_the_schema():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).parents[2] / "schemas" / "detection-event.schema.json").read_text())
    frame = Frame("dock", 7, np.zeros((4, 4, 3), np.uint8), 1_764_201_600_000_000_000, 0.0)
    outcome = build_outcome(
        device="edge-01",
        model="m",
        frame=frame,
        labels=LABELS,
        latency_ms=StageTimes(queue=0.1, preprocess=0.2, inference=3.0, postprocess=0.4, e2e=3.7),
        dets=dets((1, 2, 30, 40, 0.9, 1)),
        batch_size=1,
        emit=True,
    )
    event = json.loads(outcome.event.body)
    jsonschema.Draft202012Validator(schema).validate(event)
    assert "context" not in event
