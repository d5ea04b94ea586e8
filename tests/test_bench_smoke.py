"""Runs ``edgeinfer bench`` for a few seconds; checks the JSON's shape and sanity, not the numbers' size."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import pytest

from edgeinfer.cli import main
from edgeinfer.detect.tuning import usable_cores

pytest.importorskip("psutil")
pytest.importorskip("tqdm")

PCTS = ("p50", "p90", "p95", "p99", "max")


@pytest.fixture(autouse=True)
def _restore_logging():
    """main() configures logging for a process (a handler on the stderr of the moment); undo it so later
    tests do not log into this test's closed capture stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and value > 0


def test_bench_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_json, out_csv = tmp_path / "bench.json", tmp_path / "bench.csv"
    code = main(
        [
            "bench",
            "--sweep",
            "--sweep-cameras",
            "2",
            "--sweep-batches",
            "2",
            "--no-latency-config",
            "--duration",
            "1.5",
            "--warmup",
            "0.5",
            "--repeats",
            "1",
            "--baseline-seconds",
            "0.5",
            "--prerender",
            "4",
            "--no-progress",
            "--json",
            str(out_json),
            "--csv",
            str(out_csv),
        ]
    )
    assert code == 0
    stdout = capsys.readouterr().out
    assert "| config |" in stdout and "pipeline fps" in stdout

    run = json.loads(out_json.read_text())
    for key in ("cpu_model", "cores_logical", "python", "runtime_versions"):
        assert run["machine"][key]
    for key in ("name", "sha256", "input"):
        assert run["model"][key]
    assert len(run["model"]["sha256"]) == 64
    assert run["errors"] == []
    [row] = run["results"]
    assert (row["cameras"], row["max_batch_size"]) == (2, 2)
    detector = row["detector"]
    assert detector["how"] == "measured" and detector["instances"] >= 1 and detector["batch"] in (1, 2)
    configs = {(m["instances"], m["threads"], m["batch"]) for m in row["sweep"]}
    assert (detector["instances"], detector["threads"], detector["batch"]) in configs
    assert row["limit_fps"] == pytest.approx(max(m["fps"] for m in row["sweep"]), rel=0.01)
    assert row["max_delay_ms"] == 10.0
    for key in (
        "pipeline_fps", "limit_fps", "naive_fps", "naive_tuned_fps", "mean_batch_size", "peak_rss_mb", "cpu_percent",
    ):  # fmt: skip
        assert _positive(row[key]), (key, row[key])
    assert 1.0 <= row["mean_batch_size"] <= row["max_batch_size"]
    assert isinstance(row["dropped"], int | float) and row["dropped"] >= 0
    for stage in ("e2e", "queue", "preprocess", "inference", "postprocess"):
        lat = row["latency_ms"][stage]
        values = [lat[p] for p in PCTS]
        assert all(isinstance(v, float) and v >= 0 for v in values), (stage, lat)
        assert values == sorted(values), (stage, lat)
    assert row["latency_ms"]["e2e"]["p50"] > 0 and row["latency_ms"]["inference"]["p50"] > 0
    assert row["latency_ms"]["e2e"]["p50"] >= row["latency_ms"]["inference"]["p50"]
    for key in ("pipeline_vs_limit", "pipeline_vs_naive", "pipeline_vs_naive_tuned"):
        assert _positive(row["ratios"][key])
    assert row["e2e_cdf"] == sorted(row["e2e_cdf"])
    # Where the CPU went (Linux /proc): the instances' threads and the stages' thread did the work.
    cpu = row["cpu_ms_per_frame"]
    assert cpu["inference"] > 0 and cpu["stages"] > 0, cpu
    assert row["cpu_bound_fps"] == pytest.approx(1e3 * usable_cores() / sum(cpu.values()), rel=0.05)
    assert _positive(row["ratios"]["cpu_bound_vs_naive"]) and _positive(row["ratios"]["cpu_bound_vs_limit"])
    assert "Where the CPU goes" in stdout and "CPU-bound / naive" in stdout

    with out_csv.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and float(rows[0]["pipeline_fps"]) == pytest.approx(row["pipeline_fps"])
