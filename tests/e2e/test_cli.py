"""The CLI end to end, as a user runs it: detect, model inspect, config check/show, run + events."""

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from edgeinfer.detect.assets import bundled_dir
from edgeinfer.detect.assets import test_images_dir as bundled_test_images

from .helpers import REPO, edgeinfer, match


def test_detect_json_finds_the_shapes_in_the_bundled_test_images():
    truth = json.loads((bundled_test_images() / "truth.json").read_text())
    result = edgeinfer("detect", "--json", str(bundled_test_images()))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["image"].rsplit("/", 1)[-1] for r in records} == set(truth)
    found = expected = matched = 0
    for r in records:
        assert set(r) == {"image", "width", "height", "detections", "timing_ms"}
        assert set(r["timing_ms"]) == {"preprocess", "inference", "postprocess"}
        assert (r["width"], r["height"]) == (640, 480)
        gt = truth[r["image"].rsplit("/", 1)[-1]]
        found += len(r["detections"])
        expected += len(gt)
        matched += match(r["detections"], gt)
    recall, precision = matched / expected, matched / found
    assert recall >= 0.95 and precision >= 0.95, (recall, precision)


def test_detect_saves_annotated_copies(tmp_path):
    image = sorted(bundled_test_images().glob("*.jpg"))[0]
    result = edgeinfer("detect", str(image), "--save", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / image.name).stat().st_size > 0
    assert image.name in result.stdout


def test_missing_model_is_one_clear_line(tmp_path):
    result = edgeinfer("detect", str(bundled_test_images()), "--model", str(tmp_path / "yolo.tflite"))
    assert result.returncode == 1
    assert result.stderr.strip() == f"edgeinfer: error: model file not found: {tmp_path / 'yolo.tflite'}"


def test_model_inspect_reports_tensors_layout_names_and_sha():
    result = edgeinfer("model", "inspect", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    manifest = json.loads((bundled_dir() / "manifest.json").read_text())
    entry = next(m for m in manifest["models"] if m["name"] == manifest["default"])
    assert info["sha256"] == entry["sha256"]
    assert info["yolo_layout"] == "yolov8" and info["names"] == ["circle", "square", "triangle"]
    assert info["input"]["dtype"] in ("uint8", "int8") and info["input"]["quantization"]["scale"] > 0
    assert info["outputs"][0]["shape"][1] == 7
    text = edgeinfer("model", "inspect")
    assert "layout    yolov8" in text.stdout and "zero_point=" in text.stdout


def test_config_check_and_show(tmp_path, monkeypatch):
    config = tmp_path / "edge.yaml"
    config.write_text(
        "device: pole-7\ncameras:\n  - {name: gate, source: rtsp://cam:secretpw@10.0.0.5/s1}\n"
        "mqtt:\n  username: edge\n  password: ${MQTT_PW}\n"
    )
    env = {"MQTT_PW": "hunter2-very-secret"}
    ok = edgeinfer("config", "check", str(config), env=env)
    assert ok.returncode == 0 and "ok" in ok.stdout
    shown = edgeinfer("config", "show", str(config), env=env)
    assert shown.returncode == 0
    assert "hunter2" not in shown.stdout and "password: '********'" in shown.stdout
    assert "device: pole-7" in shown.stdout and "max_batch_size: 4" in shown.stdout


def test_config_error_is_path_line_and_expectation_without_traceback(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("cameras:\n  - name: gate\n    source: 0\n    fps: fast\n")
    result = edgeinfer("config", "check", str(config))
    assert result.returncode == 2
    assert f"{config}:4: cameras[0].fps: Input should be a valid number" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_embedded_default_run_then_events_match_the_demo_clip(tmp_path):
    """The README's run command: no config, bundled model and clip, local store only."""
    result = edgeinfer(
        "run", "--duration", "15", "--data-dir", str(tmp_path), "--status-interval", "5", timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "fps demo=" in result.stderr  # the one-line status
    listed = edgeinfer("events", "--json", "--data-dir", str(tmp_path))
    assert listed.returncode == 0, listed.stderr
    events = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(events) >= 50  # ~10 fps for 15 s, every frame has shapes
    truth = json.loads((bundled_dir() / "demo_truth.json").read_text())
    n_frames = len(truth["frames"])
    found = expected = matched = 0
    for event in events:
        assert 0 <= event["frame"] < n_frames  # the frame's position in the clip (seq continues across runs)
        gt = truth["frames"][str(event["frame"])]
        found += len(event["detections"])
        expected += len(gt)
        matched += match(event["detections"], gt)
        assert event["camera"] == "demo" and event["model"].startswith("shapes-s")
    assert matched / expected >= 0.9 and matched / found >= 0.9, (matched, expected, found)
    newest = edgeinfer("events", "--limit", "3", "--data-dir", str(tmp_path))
    assert len(newest.stdout.splitlines()) == 3 and "demo" in newest.stdout


@pytest.mark.slow
def test_sigterm_mid_run_exits_0_quickly_and_leaves_a_consistent_store(tmp_path):
    config = tmp_path / "edge.yaml"
    config.write_text(
        f"data_dir: {tmp_path}\nhttp: {{enabled: false}}\ncameras:\n"
        "  - {name: a, source: {type: synthetic, seed: 1}, events: every_frame}\n"
        "  - {name: b, source: {type: synthetic, seed: 2}, events: every_frame}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeinfer", "run", "-c", str(config)],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(6)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=10)
    took = time.monotonic() - sent
    stderr = proc.stderr.read()
    assert code == 0, stderr
    assert took < 5, took
    assert "Traceback" not in stderr
    db = sqlite3.connect(tmp_path / "edgeinfer.db")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    bodies = [json.loads(b) for (b,) in db.execute("SELECT body FROM events ORDER BY id")]
    assert len(bodies) > 0
    for cam in ("a", "b"):
        seqs = [e["seq"] for e in bodies if e["camera"] == cam]
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))


def _store_with_events(data_dir):
    """Three events as the pipeline writes them (compact JSON), two cameras, one with no detections."""
    from edgeinfer.store.sqlite import STORE_FILE, EventRow, Store

    t0 = 1_790_000_000_123_456_789  # 2026-09-21T14:13:20.123Z
    rows = []
    for i, (camera, dets) in enumerate(
        [
            ("gate", [("person", 0.91234), ("car", 0.5)]),
            ("yard-north-1", []),
            ("gate", [("car", 0.875)]),
        ]
    ):
        body = {
            "device": "box",
            "camera": camera,
            "seq": 7 + i,
            "ts": ["2026-09-21T14:13:20.123Z", "2026-09-21T14:13:21.123Z", "2026-09-21T14:13:22.123Z"][i],
            "model": "shapes-s",
            "detections": [
                {"label": label, "class_id": 0, "score": score, "box": [1.0, 2.0, 3.5, 4.0]}
                for label, score in dets
            ],
            "latency_ms": {"e2e": 1.0, "queue": 0.1, "preprocess": 0.2, "inference": 0.5, "postprocess": 0.2},
            "batch_size": 1,
        }
        rows.append(EventRow(camera, t0 + i * 10**9, json.dumps(body, separators=(",", ":"))))
    store = Store(data_dir / STORE_FILE)
    store.append(rows)
    store.close()
    return [r.body for r in rows]


def test_events_prints_stored_events_exactly(tmp_path):
    bodies = _store_with_events(tmp_path)
    text = edgeinfer("events", "--data-dir", str(tmp_path))
    assert text.returncode == 0, text.stderr
    assert text.stdout == (
        "2026-09-21T14:13:20.123Z  gate         #7      person 0.91, car 0.50\n"
        "2026-09-21T14:13:21.123Z  yard-north-1 #8      \n"
        "2026-09-21T14:13:22.123Z  gate         #9      car 0.88\n"
    )
    as_json = edgeinfer("events", "--json", "--data-dir", str(tmp_path))
    assert as_json.stdout == "".join(b + "\n" for b in bodies)  # the stored JSON, byte for byte
    newest = edgeinfer("events", "--json", "--limit", "2", "--data-dir", str(tmp_path))
    assert newest.stdout == "".join(b + "\n" for b in bodies[1:])  # the newest N, oldest first
    gate = edgeinfer("events", "--json", "--camera", "gate", "--since", "2026-09-21T14:13:20.5Z",
                     "--data-dir", str(tmp_path))  # fmt: skip
    assert gate.stdout == bodies[2] + "\n"


def test_events_errors_are_one_clear_line(tmp_path):
    result = edgeinfer("events", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"edgeinfer: error: no local store at {tmp_path / 'edgeinfer.db'} (has `edgeinfer run` written there?)"
    )
    _store_with_events(tmp_path)
    bad = edgeinfer("events", "--data-dir", str(tmp_path), "--since", "yesterday")
    assert bad.returncode == 1 and bad.stdout == ""
    assert "--since 'yesterday': expected an RFC3339 time or an age such as 10m" in bad.stderr
