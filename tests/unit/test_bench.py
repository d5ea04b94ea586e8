"""The benchmark harness's pure parts: statistics, summaries over repeats, targets, tables, CSV, compare."""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from edgeinfer.bench import report
from edgeinfer.bench.cli import add_arguments, specs_from_args
from edgeinfer.bench.runner import evaluate_targets, summarize_result, sweep_specs
from edgeinfer.bench.spec import RunSpec
from edgeinfer.bench.stats import cdf_points, median_spread, merge_latency, summarize
from edgeinfer.bench.worker import _handoff, build_config
from edgeinfer.config import DetectorConfig


def test_summarize_orders_percentiles() -> None:
    s = summarize(np.arange(1, 101, dtype=float))
    assert s is not None
    assert s["p50"] <= s["p90"] <= s["p95"] <= s["p99"] <= s["max"] == 100.0
    assert s["n"] == 100
    assert summarize([]) is None


def test_cdf_points_and_median_spread() -> None:
    pts = cdf_points([5.0, 1.0, 3.0], points=5)
    assert pts[0] == 1.0 and pts[-1] == 5.0 and pts == sorted(pts)
    assert median_spread([3.0, None, 1.0, 2.0]) == (2.0, 1.0, 3.0)
    assert median_spread([None]) == (None, None, None)


def test_merge_latency_takes_medians_and_ranges() -> None:
    reps = [summarize([1.0, 2.0, 3.0]), summarize([2.0, 4.0, 6.0]), None]
    med, spread = merge_latency(reps)
    assert med["p50"] == pytest.approx(3.0)  # median of 2 and 4
    assert spread["p50"] == [2.0, 4.0]
    assert med["n"] == 6


def test_handoff_is_e2e_minus_stages() -> None:
    samples = {
        "e2e": np.array([10.0, 20.0]),
        "queue": np.array([1.0, 2.0]),
        "preprocess": np.array([1.0, 1.0]),
        "inference": np.array([5.0, 5.0]),
        "postprocess": np.array([1.0, 1.0]),
    }
    assert list(_handoff(samples)) == [2.0, 11.0]
    samples["queue"] = np.array([1.0])
    assert _handoff(samples).size == 0


def _fake_result(cameras: int = 4, batch: int = 4, fps: float | None = None, scale: float = 1.0) -> dict:
    def lat(base: float) -> dict:
        return summarize(np.linspace(base, base * 1.4, 50))  # type: ignore[return-value]

    def rep(k: float) -> dict:
        return {
            "pipeline": {
                "pipeline_fps": 90.0 * scale * k,
                "mean_batch_size": 3.5,
                "dropped": 0,
                "cpu_percent": 180.0,
                "cpu_ms_per_frame": {"inference": 2.0 * k, "stages": 1.0, "event loop": 0.5},
                "cpu_bound_fps": 2e3 / (3.5 + 2.0 * (k - 1)),
                "latency_ms": {
                    "e2e": lat(30.0 * k),
                    "queue": lat(5.0),
                    "preprocess": lat(4.0),
                    "inference": lat(18.0),
                    "postprocess": lat(1.0),
                    "handoff": lat(2.0),
                    "output": lat(0.5),
                },
                "e2e_cdf": cdf_points(np.linspace(30.0 * k, 42.0 * k, 50)),
            },
            "limit": {"fps": 100.0, "latency_ms": lat(40.0), "instances": 2, "threads": 1, "batch": 1},
            "limit_b1": {"fps": 55.0, "latency_ms": lat(18.0)},
            "sweep": [
                {"instances": 1, "threads": 1, "batch": 1, "fps": 50.0 * k, "p50_ms": 20.0},
                {"instances": 2, "threads": 1, "batch": 1, "fps": 100.0 * k, "p50_ms": 20.0},
            ],
            "naive": {"fps": 40.0, "latency_ms": lat(25.0)},
            "naive_tuned": {"fps": 60.0, "latency_ms": lat(18.0), "threads": 2},
        }

    spec = RunSpec(cameras=cameras, max_batch_size=batch, fps=fps, prerender=8)
    return {
        "spec": spec.to_json(),
        "model": {
            "name": "m",
            "file": "m.tflite",
            "sha256": "0" * 64,
            "input": {"hw": [320, 320]},
            "backend": "litert",
            "runtime_version": "x",
        },
        "startup": {"first_event_from_process_start_s": 1.2, "model_load_s": 0.05},
        "peak_rss_mb": 150.0,
        "ring_mb": 28.1,
        "detector": {"instances": 2, "threads": 1, "batch": 4, "how": "measured", "rss_mb_per_instance": 9.0},
        "repeats": [rep(0.95), rep(1.0), rep(1.05)],
    }


def test_summarize_result_shape() -> None:
    row = summarize_result(_fake_result())
    assert row["pipeline_fps"] == pytest.approx(90.0)
    assert row["spread"]["pipeline_fps"] == [pytest.approx(85.5), pytest.approx(94.5)]
    assert row["ratios"]["pipeline_vs_limit"] == pytest.approx(0.9)
    assert row["ratios"]["pipeline_vs_naive"] == pytest.approx(2.25)
    assert row["ratios"]["p50_e2e_minus_p50_limit_ms"] > 0
    assert set(row["latency_ms"]) >= {"e2e", "queue", "preprocess", "inference", "postprocess"}
    assert row["peak_rss_excl_ring_mb"] == pytest.approx(121.9)
    # CPU per frame: the median per group over the repeats, largest first; the bound paired per repeat
    assert row["cpu_ms_per_frame"] == {"inference": 2.0, "stages": 1.0, "event loop": 0.5}
    assert list(row["cpu_ms_per_frame"]) == ["inference", "stages", "event loop"]
    assert row["cpu_bound_fps"] == pytest.approx(2e3 / 3.5, abs=1e-3)
    assert row["ratios"]["cpu_bound_vs_naive"] == pytest.approx(2e3 / 3.5 / 40.0, abs=1e-3)
    assert row["ratios"]["cpu_bound_vs_limit"] == pytest.approx(2e3 / 3.5 / 100.0, abs=1e-3)
    json.dumps(row)  # plain data


def test_summarize_result_without_thread_cpu() -> None:
    result = _fake_result()
    for rep in result["repeats"]:
        rep["pipeline"]["cpu_ms_per_frame"] = rep["pipeline"]["cpu_bound_fps"] = None  # no /proc
    row = summarize_result(result)
    assert row["cpu_ms_per_frame"] is None and row["cpu_bound_fps"] is None
    assert row["ratios"]["cpu_bound_vs_naive"] is None
    assert "not measured" in report.cpu_table([row])
    note = {t["target"]: t for t in evaluate_targets([row])}["pipeline_fps / naive_fps"]["note"]
    assert "at most" not in note


def test_targets_and_tables() -> None:
    rows = [
        summarize_result(_fake_result(4, 4)),
        summarize_result(_fake_result(4, 8, scale=0.8)),
        summarize_result(_fake_result(1, 4, fps=10.0)),
    ]
    targets = {t["target"]: t for t in evaluate_targets(rows)}
    assert targets["pipeline_fps / limit_fps"]["met"] is True
    assert "best batch size 4" in targets["pipeline_fps / limit_fps"]["measured"]
    assert targets["pipeline_fps / naive_fps"]["met"] is True
    assert targets["1 camera @ 10 fps: p50 e2e - p50 bare invoke"]["met"] is False
    assert targets["startup to first event (from process start)"]["met"] is True
    assert targets["peak RSS at 4 cameras"]["met"] is True  # 150 MB
    assert targets["peak RSS at 8 cameras"]["met"] is None  # not run
    run = {
        "machine": {"cpu_model": "cpu", "python": "3.11"},
        "model": {"file": "m"},
        "results": rows,
        "targets": list(targets.values()),
    }
    md = report.markdown(run)
    assert md.count("\n| 4 cam, b4, max fps |") == 4  # main, sweep, stage and CPU tables
    # the CPU table: per group, their sum, the bound (median [spread]) and the bound over naive
    assert (
        "| 4 cam, b4, max fps | 2.00 | - | 1.00 | 0.50 | - | - | - | 3.50 | 571 [556-588] | 14.29 [13.89-14.71] |"
        in md
    )
    assert "at most 571 fps = 14.29 x naive" in targets["pipeline_fps / naive_fps"]["note"]
    assert "at most 571 fps = 5.71 x limit" in targets["pipeline_fps / limit_fps"]["note"]
    assert "| 2x1 b4 (measured) | 50 fps / 20.0 ms | 100 fps / 20.0 ms |" in md
    assert "90.0 [85.5-94.5]" in md
    parsed = list(csv.DictReader(io.StringIO(report.to_csv(rows))))
    assert len(parsed) == 3 and "latency_e2e_p99_ms" in parsed[0]
    cmp = report.compare(run, run)
    assert "within noise" in cmp


def test_targets_without_the_configs() -> None:
    targets = evaluate_targets([summarize_result(_fake_result(2, 2))])
    assert [t["met"] for t in targets][:2] == [None, None]


def test_cli_specs() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--sweep", "--sweep-batches", "1,8", "--sweep-cameras", "2", "--fps", "none"])
    specs = specs_from_args(args)
    assert [(s.cameras, s.max_batch_size, s.fps) for s in specs] == [(2, 1, None), (2, 8, None), (1, 4, 10.0)]
    assert [s.name for s in sweep_specs(RunSpec(), [2], [4], latency_config=False)] == ["4cam/b2/maxfps"]
    with pytest.raises(SystemExit):
        parser.parse_args(["--sweep-batches", "0,x"])
    [spec] = specs_from_args(parser.parse_args(["--nice", "0", "--no-latency-config"]))
    assert spec.nice == 0 and build_config(spec, Path("/tmp")).detector.nice == 0
    assert specs_from_args(parser.parse_args([]))[0].nice == DetectorConfig().nice == 10
    with pytest.raises(SystemExit):
        parser.parse_args(["--nice", "20"])


def test_worker_failure_is_reported(tmp_path) -> None:
    from edgeinfer.bench.runner import WorkerError, run_spec

    spec = RunSpec(model=str(tmp_path / "missing.tflite"), repeats=1, duration=0.1, warmup=0.0)
    with pytest.raises(WorkerError, match="model file not found"):
        run_spec(spec)


@pytest.mark.parametrize(("peak", "met"), [(241.0, True), (251.0, False)])
def test_peak_rss_at_8_cameras_has_its_own_goal(peak: float, met: bool) -> None:
    targets = {
        t["target"]: t
        for t in evaluate_targets([summarize_result({**_fake_result(8, 4), "peak_rss_mb": peak})])
    }
    assert targets["peak RSS at 8 cameras"]["met"] is met
    assert targets["peak RSS at 4 cameras"]["met"] is None  # an 8-camera row is not judged by 4's goal
