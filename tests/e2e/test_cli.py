"""The CLI end to end, as a user runs it: detect, model inspect, config check/show, run + events."""

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


# --------------------------------------------------------------------------- logs on the command line

LOG_LINE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}(Z|[+-]\d{2}:\d{2}) (DEBUG|INFO|WARNING|ERROR)"
)


def _an_image():
    return str(sorted(bundled_test_images().glob("*.jpg"))[0])


def test_json_log_format_makes_every_stderr_line_json_native_chatter_included():
    result = edgeinfer("--log-format", "json", "detect", _an_image())
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]  # LiteRT's XNNPACK line too
    assert any(r["logger"] == "native" and "XNNPACK" in r["msg"] for r in records), records
    assert result.stdout.startswith(_an_image())


def test_global_options_after_the_verb_in_lower_case_and_native_chatter_obeys_them():
    result = edgeinfer("detect", _an_image(), "--log-level", "error")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no "INFO: Created TensorFlow Lite XNNPACK delegate" below ERROR
    shown = edgeinfer("detect", _an_image(), "--log-level", "info")
    assert any("native: INFO: Created TensorFlow Lite XNNPACK" in line for line in shown.stderr.splitlines())


def test_a_timing_only_model_is_a_loud_warning_with_date_and_zone():
    result = edgeinfer("detect", _an_image(), "--model", "shapes-m", env={"TZ": "Asia/Kolkata"})
    assert result.returncode == 0, result.stderr
    warning = next(line for line in result.stderr.splitlines() if "timing-only" in line)
    assert LOG_LINE.match(warning) and "+05:30 WARNING" in warning, warning
    assert "model shapes-m is timing-only" in warning and "shapes-s" in warning
    bundled = edgeinfer("detect", _an_image())
    assert "timing-only" not in bundled.stderr
    by_path = edgeinfer("detect", _an_image(), "--model", str(bundled_dir() / "shapes-m.onnx"))
    assert "model shapes-m is timing-only" in by_path.stderr


@pytest.mark.slow
def test_run_json_logs_take_in_opencv_and_ffmpeg_lines_and_leave_stdout_alone(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on: FFmpeg's "[tcp @ 0x...] Connection refused"
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "edge.yaml"
    config.write_text(
        f"data_dir: {tmp_path}\nhttp: {{enabled: false}}\n"
        f"cameras:\n  - {{name: gone, source: 'rtsp://127.0.0.1:{port}/stream'}}\n"
    )
    result = edgeinfer("--log-format", "json", "run", "-c", str(config), "--duration", "3", timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # OpenCV prints INFO/DEBUG on stdout: they are never switched on
    records = [json.loads(line) for line in result.stderr.splitlines()]
    native = [r["msg"] for r in records if r["logger"] == "native"]
    assert any(m.startswith("[tcp @ ") and "Connection refused" in m for m in native), native
    assert any(m.startswith("[ WARN:") for m in native), native
    quiet = edgeinfer("run", "-c", str(config), "--duration", "2", "--log-level", "error", timeout=60)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


# --------------------------------------------------------------------------- detect: folders and files


def _images(folder, *names):
    source = sorted(bundled_test_images().glob("*.jpg"))
    for i, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source[i], path)
    return folder


def test_detect_recurses_with_r_and_says_when_a_folder_has_no_images(tmp_path):
    _images(tmp_path / "photos", "top.jpg", "day1/a.jpg", "day1/deeper/b.png")
    flat = edgeinfer("detect", "--json", str(tmp_path / "photos"))
    assert flat.returncode == 0, flat.stderr
    assert [json.loads(line)["image"] for line in flat.stdout.splitlines()] == [
        str(tmp_path / "photos/top.jpg")
    ]
    deep = edgeinfer("detect", "--json", "-r", str(tmp_path / "photos"))
    assert [json.loads(line)["image"] for line in deep.stdout.splitlines()] == [
        str(tmp_path / "photos/day1/a.jpg"),
        str(tmp_path / "photos/day1/deeper/b.png"),
        str(tmp_path / "photos/top.jpg"),
    ]
    (tmp_path / "empty").mkdir()
    empty = edgeinfer("detect", str(tmp_path / "empty"))
    assert empty.returncode == 1 and empty.stdout == ""
    assert empty.stderr.strip() == f"edgeinfer: error: no images found in {tmp_path / 'empty'}"
    _images(tmp_path / "albums", "2026/summer.jpg")
    nested = edgeinfer("detect", str(tmp_path / "albums"))
    assert nested.returncode == 1
    assert nested.stderr.strip() == (
        f"edgeinfer: error: no images found in {tmp_path / 'albums'} (there are some in its subfolders: add -r)"
    )


def test_detect_save_never_lets_two_images_overwrite_each_other(tmp_path):
    _images(tmp_path, "a/x.jpg", "b/x.jpg", "b/y.jpg")
    out = tmp_path / "out"
    result = edgeinfer("detect", str(tmp_path / "a/x.jpg"), str(tmp_path / "b"), "--save", str(out))
    assert result.returncode == 0, result.stderr
    saved = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))
    assert saved == ["a/x.jpg", "b/x.jpg", "b/y.jpg"]  # the folders kept, as the names collide
    assert "keep their folders" in result.stderr
    unique = edgeinfer("detect", str(tmp_path / "b"), "--save", str(tmp_path / "flat"))
    assert sorted(p.name for p in (tmp_path / "flat").iterdir()) == ["x.jpg", "y.jpg"]
    assert unique.returncode == 0
    original = (tmp_path / "b/x.jpg").read_bytes()
    onto_input = edgeinfer("detect", str(tmp_path / "b"), "--save", str(tmp_path / "b"))
    assert onto_input.returncode == 1 and "would overwrite the input" in onto_input.stderr
    assert (tmp_path / "b/x.jpg").read_bytes() == original  # untouched


def test_detect_says_what_is_wrong_with_a_video_a_url_and_a_broken_file(tmp_path):
    video = edgeinfer("detect", str(bundled_dir() / "demo.mp4"))
    assert video.returncode == 1 and "Traceback" not in video.stderr
    assert video.stderr.startswith(
        f"edgeinfer: error: {bundled_dir() / 'demo.mp4'} is a video; use a camera source"
    )
    url = edgeinfer("detect", "https://example.com/yard.jpg")
    assert url.returncode == 1
    assert url.stderr.startswith(
        "edgeinfer: error: https://example.com/yard.jpg: URLs are not read by detect"
    )
    assert "https:/example.com" not in url.stderr
    disguised = tmp_path / "clip.jpg"
    shutil.copyfile(bundled_dir() / "demo.mp4", disguised)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    mixed = edgeinfer("detect", str(disguised), str(tmp_path / "junk.png"), _an_image())
    assert mixed.returncode == 1  # some images failed; the good one is still done
    lines = mixed.stdout.splitlines()
    assert lines[0] == f"{disguised}: is a video; use a camera source"
    assert lines[1] == f"{tmp_path / 'junk.png'}: cannot decode image"
    assert lines[2].startswith(_an_image())


def test_detect_an_unreadable_file_is_permission_denied_not_undecodable():
    as_user: list[str] = []
    if os.geteuid() == 0:  # root reads anything: run the CLI as nobody
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv")
        as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    folder = Path(tempfile.mkdtemp(prefix="edgeinfer-perm-"))
    try:
        folder.chmod(0o755)
        locked = folder / "locked.jpg"
        shutil.copyfile(_an_image(), locked)
        locked.chmod(0)
        result = subprocess.run(
            [*as_user, sys.executable, "-m", "edgeinfer", "detect", "--json", str(locked)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
            env={**os.environ, "HOME": str(folder)},
            check=False,
        )
        assert result.returncode == 1, result.stderr
        assert json.loads(result.stdout) == {"image": str(locked), "error": "permission denied"}
    finally:
        shutil.rmtree(folder)


# --------------------------------------------------------------------------- events


def _many_events(data_dir, n, camera="gate", t0=1_790_000_000_000_000_000):
    from edgeinfer.store.sqlite import STORE_FILE, EventRow, Store
    from edgeinfer.timefmt import rfc3339_ms

    store = Store(data_dir / STORE_FILE)
    rows = []
    for i in range(n):
        ts = t0 + i * 60 * 10**9
        body = {"device": "box", "camera": camera, "seq": i, "ts": rfc3339_ms(ts), "model": "shapes-s",
                "detections": [{"label": "car", "class_id": 0, "score": 0.5, "box": [1.0, 2.0, 3.0, 4.0]}],
                "latency_ms": {"e2e": 1.0}, "batch_size": 1}  # fmt: skip
        rows.append(EventRow(camera, ts, json.dumps(body, separators=(",", ":"))))
    store.append(rows)
    store.close()
    return [r.body for r in rows]


def test_events_shows_the_newest_100_by_default_and_limit_0_shows_all(tmp_path):
    bodies = _many_events(tmp_path, 130)
    default = edgeinfer("events", "--json", "--data-dir", str(tmp_path))
    assert default.returncode == 0, default.stderr
    assert default.stdout == "".join(b + "\n" for b in bodies[-100:])
    assert "the newest 100 of 130; --limit 0 shows all" in default.stderr
    everything = edgeinfer("events", "--json", "--limit", "0", "--data-dir", str(tmp_path))
    assert everything.stdout == "".join(b + "\n" for b in bodies) and everything.stderr == ""


def test_events_times_are_local_with_the_zone_and_json_keeps_utc(tmp_path):
    bodies = _store_with_events(tmp_path)
    berlin = edgeinfer("events", "--data-dir", str(tmp_path), env={"TZ": "Europe/Berlin"})
    assert (
        berlin.stdout.splitlines()[0]
        == "2026-09-21T16:13:20.123+02:00  gate         #7      person 0.91, car 0.50"
    )
    as_json = edgeinfer("events", "--json", "--data-dir", str(tmp_path), env={"TZ": "Europe/Berlin"})
    assert as_json.stdout == "".join(b + "\n" for b in bodies)  # stored UTC ts, byte for byte


def test_events_since_a_date_is_local_midnight(tmp_path):
    # 2026-09-20T21:30Z .. one event a minute for 4 h: local midnight in Berlin is 22:00Z
    bodies = _many_events(tmp_path, 240, t0=1_789_939_800_000_000_000)
    result = edgeinfer("events", "--json", "--limit", "0", "--since", "2026-09-21", "--data-dir", str(tmp_path),
                       env={"TZ": "Europe/Berlin"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    shown = [json.loads(line) for line in result.stdout.splitlines()]
    assert shown[0]["ts"] == "2026-09-20T22:00:00.000Z" and len(shown) == 240 - 30
    assert result.stdout == "".join(b + "\n" for b in bodies[30:])


def test_events_unknown_camera_names_the_cameras_there(tmp_path):
    _store_with_events(tmp_path)
    result = edgeinfer("events", "--camera", "dock", "--data-dir", str(tmp_path))
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.strip() == (
        f"edgeinfer: error: no events from camera 'dock' in {tmp_path / 'edgeinfer.db'} "
        "(cameras in it: gate, yard-north-1)"
    )


def test_events_follow_prints_new_events_and_stops_on_ctrl_c_with_0(tmp_path):
    from edgeinfer.store.sqlite import STORE_FILE

    bodies = _many_events(tmp_path, 3)
    before = (tmp_path / STORE_FILE).stat().st_mtime_ns
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgeinfer", "events", "--json", "--follow", "--data-dir", str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = [proc.stdout.readline() for _ in range(3)]
        assert first == [b + "\n" for b in bodies]
        assert (tmp_path / STORE_FILE).stat().st_mtime_ns == before  # read-only: nothing written
        later = _many_events(tmp_path, 2, camera="yard", t0=1_790_000_900_000_000_000)
        assert [proc.stdout.readline() for _ in range(2)] == [b + "\n" for b in later]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
