"""A bundled model that was never trained (manifest status timing-only) is a loud WARNING wherever it is
used: detect (tests/e2e/test_cli.py), run and bench. The model files keep their names."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edgeinfer.cli import build_parser
from edgeinfer.commands._common import bundled_entry_of, warn_if_timing_only
from edgeinfer.detect.assets import bundled_dir, manifest


def _timing_only() -> list[str]:
    return [m["name"] for m in manifest()["models"] if m.get("status") == "timing-only"]


def test_the_manifest_marks_shapes_m_timing_only() -> None:
    assert _timing_only() == ["shapes-m"]


@pytest.mark.parametrize(
    "spec",
    ["shapes-m", str(bundled_dir() / "shapes-m_int8.tflite"), str(bundled_dir() / "shapes-m.onnx")],
)
def test_timing_only_models_are_recognised_by_name_and_by_file(
    spec: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="edgeinfer"):
        assert warn_if_timing_only(spec)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "model shapes-m is timing-only" in record.getMessage() and "shapes-s" in record.getMessage()


@pytest.mark.parametrize(
    "spec", ["bundled", "shapes-s", str(bundled_dir() / "shapes-s_int8.tflite"), "/x/y.onnx"]
)
def test_trained_or_foreign_models_pass_quietly(spec: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        assert not warn_if_timing_only(spec)
    assert caplog.records == []
    assert bundled_entry_of("nope") is None


def test_run_warns_for_the_configured_model(tmp_path: Path, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    import edgeinfer.app.daemon as daemon_module
    import edgeinfer.app.reload as reload_module
    from edgeinfer.commands import run as run_verb

    class FakeDaemon:  # no cameras opened: this test is about the warning before the daemon starts
        reload_to = None

        def __init__(self, *_args, **_kwargs):  # type: ignore[no-untyped-def]
            pass

        async def run(self) -> daemon_module.RunSummary:
            return daemon_module.RunSummary(frames=0, events=0, seconds=0.0, first_event_s=None)

    monkeypatch.setattr(daemon_module, "Daemon", FakeDaemon)
    # serve() builds its daemons from the name it imported (an earlier test may have imported it already)
    monkeypatch.setattr(reload_module, "Daemon", FakeDaemon)
    config = tmp_path / "edge.yaml"
    config.write_text(f"data_dir: {tmp_path}\ndetector: {{model: shapes-m}}\n")
    with caplog.at_level(logging.WARNING, logger="edgeinfer"):
        assert run_verb.run(build_parser().parse_args(["run", "-c", str(config)])) == 0
    assert any("model shapes-m is timing-only" in r.getMessage() for r in caplog.records)


def test_bench_warns_for_its_model(monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    import edgeinfer.bench.cli as bench_cli
    from edgeinfer.commands import bench as bench_verb

    monkeypatch.setattr(bench_cli, "run", lambda args: 0)
    with caplog.at_level(logging.WARNING, logger="edgeinfer"):
        assert bench_verb.run(build_parser().parse_args(["bench", "--model", "shapes-m"])) == 0
    assert any("model shapes-m is timing-only" in r.getMessage() for r in caplog.records)
    caplog.clear()
    bench_verb.run(build_parser().parse_args(["bench"]))
    assert caplog.records == []


def test_the_old_name_shapes_n_still_opens_shapes_m_with_a_warning(caplog):
    """shapes-n was renamed shapes-m (n < s < m, as YOLO's sizes): configs that name it keep working."""
    from edgeinfer.detect.assets import resolve_model

    with caplog.at_level(logging.WARNING, logger="edgeinfer.detect.assets"):
        path = resolve_model("shapes-n")
    assert path == bundled_dir() / "shapes-m_int8.tflite"
    assert [r.getMessage() for r in caplog.records] == [
        "model shapes-n is now called shapes-m: use that name (the old one will go)"
    ]
    assert warn_if_timing_only("shapes-n")  # and it is still the timing-only model
