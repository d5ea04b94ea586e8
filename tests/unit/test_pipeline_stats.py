"""The stats snapshot from hand-made counters and windows on a fake clock: exact values, today's shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeinfer.app.metrics import STAGES, Metrics
from edgeinfer.app.stats import FpsWindow, Stats, Window
from edgeinfer.pipeline.types import PipelineStatus, Stage, StageTimes


def status(mono=1000.0, **kw):
    base = {
        "mono": mono,
        "uptime_s": 123.456,
        "frames": {"gate": 10, "dock": 0},
        "drops": {"gate": 2, "dock": 0},
        "cameras_up": {"gate": True, "dock": False},
    }
    return PipelineStatus(**{**base, **kw})


def test_stats_json_is_exactly_the_contracts_shape():
    metrics = Metrics()
    metrics.bind(["gate", "dock"])
    for i in range(11):  # gate: a frame every 0.1 s up to now; the one at 994.9 s is out of the window
        metrics.frame_done("gate", StageTimes(1.0, 2.0, 3.0, 4.0, float(i)), i % 2 == 0, 999.0 + i * 0.1)
    metrics.frame_done("gate", StageTimes(1.0, 2.0, 3.0, 4.0, 10.0), False, 994.9)
    for size in (1, 2, 2):
        metrics.batch_done(size)
    metrics.windows["output"].add(0.25)
    stats = metrics.stats(status(mono=1000.0))
    assert stats.to_json() == {
        "uptime_s": 123.5,
        "fps": {"gate": 10.0, "dock": 0.0},
        "frames": {"gate": 10, "dock": 0},
        "drops": {"gate": 2, "dock": 0},
        "cameras_up": {"gate": True, "dock": False},
        "batch_size_mean": 1.667,
        "latency_ms": {"p50": 5.5, "p90": 9.9, "p99": 10.0},
        "stage_latency_ms": {
            "queue": {"p50": 1.0, "p90": 1.0, "p99": 1.0},
            "preprocess": {"p50": 2.0, "p90": 2.0, "p99": 2.0},
            "inference": {"p50": 3.0, "p90": 3.0, "p99": 3.0},
            "postprocess": {"p50": 4.0, "p90": 4.0, "p99": 4.0},
            "output": {"p50": 0.25, "p90": 0.25, "p99": 0.25},
            "e2e": {"p50": 5.5, "p90": 9.9, "p99": 10.0},
        },
    }
    assert list(stats.to_json()["stage_latency_ms"]) == list(STAGES)  # Stage order, as before
    assert stats.latency_ms is stats.stage_latency_ms[Stage.E2E]


def test_before_the_first_frame_latencies_are_empty_and_rates_zero():
    empty = {stage: Window() for stage in STAGES}
    stats = Stats.collect(status(frames={"gate": 0}, drops={"gate": 0}), empty, Window(), {})
    out = stats.to_json()
    assert out["latency_ms"] == {} and out["stage_latency_ms"] == {}
    assert out["fps"] == {"gate": 0.0} and out["batch_size_mean"] == 0.0
    assert stats.latency_ms is None


@pytest.mark.parametrize(
    ("times", "now", "rate"),
    [
        ([], 10.0, 0.0),
        ([9.0], 10.0, 0.0),  # one frame: no rate yet
        ([9.0, 9.5], 10.0, 1.0),  # (2 - 1) frames over 1 s from the first to now
        ([1.0, 2.0, 9.0, 9.5, 10.0], 10.0, 2.0),  # only the last 5 s count
        ([0.0, 1.0, 2.0], 30.0, 0.0),  # all too old
    ],
)
def test_fps_window(times, now, rate):
    window = FpsWindow()
    for t in times:
        window.add(t)
    assert window.rate(now) == rate


def test_stats_validate_against_the_schema():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).parents[2] / "schemas" / "stats.schema.json").read_text())
    metrics = Metrics()
    metrics.bind(["gate"])
    metrics.frame_done("gate", StageTimes(1.0, 2.0, 3.0, 4.0, 10.0), True, 999.5)
    body = metrics.stats(status(frames={"gate": 1}, drops={"gate": 0}, cameras_up={"gate": True})).to_json()
    body |= {"device": "box", "ts": "2025-11-27T00:00:00.123Z", "store_backlog": {"mqtt": 3}}
    jsonschema.Draft202012Validator(schema).validate(body)


def test_metrics_observe_what_the_pipeline_reports():
    metrics = Metrics()
    metrics.bind(["gate"])
    sample = metrics.registry.get_sample_value
    assert sample("edgeinfer_frames_dropped_total", {"camera": "gate", "reason": "stale"}) == 0.0
    metrics.frame_captured("gate")
    metrics.frame_captured("gate")
    metrics.frame_dropped("gate", "superseded")
    metrics.frame_done("gate", StageTimes(0.5, 1.0, 2.0, 1.5, 5.0), True, 1.0)
    metrics.batch_done(1)
    assert sample("edgeinfer_frames_captured_total", {"camera": "gate"}) == 2.0
    assert sample("edgeinfer_frames_dropped_total", {"camera": "gate", "reason": "superseded"}) == 1.0
    assert sample("edgeinfer_frames_processed_total", {"camera": "gate"}) == 1.0
    assert sample("edgeinfer_events_total", {"camera": "gate"}) == 1.0
    assert sample("edgeinfer_stage_latency_seconds_sum", {"stage": "e2e"}) == pytest.approx(0.005)
    assert sample("edgeinfer_batch_size_count") == 1.0
    assert [metrics.windows[s].values().tolist() for s in STAGES] == [[0.5], [1.0], [2.0], [1.5], [], [5.0]]
