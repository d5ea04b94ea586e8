"""`edgeinfer config check`: what cannot work is an error at its key's line, checked without a camera."""

import socket
import textwrap

import pytest

from edgeinfer.cli import main
from edgeinfer.config import load_config
from edgeinfer.detect.assets import bundled_dir, demo_clip
from edgeinfer.detect.assets import test_images_dir as bundled_test_images
from edgeinfer.errors import ConfigError

SYNTHETIC = "{type: synthetic}"


def write(tmp_path, text, name="edge.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    path.chmod(0o600)
    return path


def check(capsys, *argv):
    code = main(["config", "check", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def config_errors(err):
    """The file:line lines of a config error, without the TFLite runtime's own INFO chatter."""
    lines = [line.removeprefix("edgeinfer: config error:").strip() for line in err.splitlines()]
    return [line for line in lines if line and not line.startswith(("INFO:", "edgeinfer: warning:"))]


def test_a_config_that_can_work_is_ok_and_names_the_model_classes(tmp_path, capsys):
    path = write(
        tmp_path,
        f"""\
        cameras:
          - name: yard
            source: {SYNTHETIC}
            classes: [circle, square]
            min_score: {{triangle: 0.6}}
          - {{name: clip, source: {demo_clip()}}}
          - {{name: stills, source: {bundled_test_images()}}}
        """,
    )
    code, out, err = check(capsys, path, "--offline")
    assert code == 0, err
    assert out == f"{path}: ok (3 camera(s), detector bundled, 3 classes, network not checked (--offline))\n"


def test_classes_the_model_does_not_know_are_errors_at_their_lines(tmp_path, capsys):
    # Before: "ok", and the daemon ran with zero events and no warning.
    path = write(
        tmp_path,
        f"""\
        cameras:
          - name: gate
            source: {SYNTHETIC}
            classes: [person, square, car]
            min_score:
              squares: 0.5
              circle: 0.4
        """,
    )
    code, out, err = check(capsys, path, "--offline")
    assert code == 2 and out == ""
    assert config_errors(err) == [
        f"{path}:4: cameras[0].classes[0]: 'person' is not a class of the model; it knows: circle, square, triangle",
        f"{path}:4: cameras[0].classes[2]: 'car' is not a class of the model; it knows: circle, square, triangle",
        f"{path}:6: cameras[0].min_score.squares: 'squares' is not a class of the model (did you mean 'square'?); "
        "it knows: circle, square, triangle",
    ]
    assert "Traceback" not in err


def test_a_missing_model_file_is_an_error_at_detector_model(tmp_path, capsys):
    path = write(
        tmp_path, f"cameras: [{{name: a, source: {SYNTHETIC}}}]\ndetector:\n  model: {tmp_path}/yolo.tflite\n"
    )
    code, _, err = check(capsys, path, "--offline")
    assert code == 2
    assert config_errors(err) == [f"{path}:3: detector.model: model file not found: {tmp_path}/yolo.tflite"]


def test_a_model_that_does_not_load_is_an_error_at_detector_model(tmp_path, capsys):
    (tmp_path / "broken.tflite").write_bytes(b"not a flatbuffer at all" * 10)
    path = write(
        tmp_path,
        f"cameras: [{{name: a, source: {SYNTHETIC}}}]\ndetector: {{model: {tmp_path}/broken.tflite}}\n",
    )
    code, _, err = check(capsys, path, "--offline")
    (line,) = config_errors(err)
    assert code == 2 and line.startswith(f"{path}:2: detector.model: broken.tflite: ")
    assert "Traceback" not in err


def test_a_pinned_sha256_that_differs_is_an_error_at_detector_sha256(tmp_path, capsys):
    path = write(
        tmp_path, f"cameras: [{{name: a, source: {SYNTHETIC}}}]\ndetector:\n  sha256: '{'0' * 64}'\n"
    )
    code, _, err = check(capsys, path, "--offline")
    (line,) = config_errors(err)
    assert code == 2 and line.startswith(f"{path}:3: detector.sha256: ") and "refusing to start" in line


@pytest.mark.parametrize("verb", [["config", "check", "--offline"], ["run", "--duration", "1", "-c"]])
def test_a_model_path_that_is_a_directory_is_one_line(tmp_path, capfd, verb):
    # Before: IsADirectoryError traceback from `run`, "ok" from `config check`.
    # capfd, not capsys: `run` routes native output through descriptor 2, so its messages go there.
    path = write(tmp_path, f"cameras: [{{name: a, source: {SYNTHETIC}}}]\ndetector:\n  model: {tmp_path}\n")
    assert main([*verb, str(path)]) == 2
    err = capfd.readouterr().err
    assert err == (
        f"edgeinfer: config error: {path}:3: detector.model: {tmp_path} is a directory: "
        "expected a .tflite, .onnx or .engine model file\n"
    )


def test_a_bundled_model_name_is_not_taken_for_a_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shapes-m").mkdir()
    assert load_config(write(tmp_path, "detector: {model: shapes-m}\n")).detector.model == "shapes-m"


def test_missing_files_and_an_empty_image_folder_are_errors_at_their_lines(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no images here")
    path = write(
        tmp_path,
        f"""\
        cameras:
          - {{name: a, source: {tmp_path}/gone.mp4}}
          - {{name: b, source: {tmp_path}/empty}}
          - {{name: c, source: {tmp_path}/notes}}
          - {{name: d, source: {bundled_test_images()}}}
        detector:
          labels: {tmp_path}/labels.txt
        mqtt:
          tls:
            ca_file: {tmp_path}/ca.pem
        """,
    )
    code, _, err = check(capsys, path, "--offline")
    assert code == 2
    assert config_errors(err) == [
        f"{path}:2: cameras[0].source: video file not found: {tmp_path}/gone.mp4",
        f"{path}:3: cameras[1].source: image folder {tmp_path}/empty has no .bmp/.jpeg/.jpg/.png/.tif/.tiff/.webp files",
        f"{path}:4: cameras[2].source: image folder {tmp_path}/notes has no .bmp/.jpeg/.jpg/.png/.tif/.tiff/.webp files",
        f"{path}:7: detector.labels: labels file not found: {tmp_path}/labels.txt",
        f"{path}:10: mqtt.tls.ca_file: ca file not found: {tmp_path}/ca.pem",
    ]


def test_a_missing_device_node_is_a_warning(tmp_path, capsys):
    path = write(tmp_path, "cameras: [{name: a, source: /dev/video97}]\n")
    code, out, err = check(capsys, path, "--offline")
    assert code == 0 and ": ok (" in out
    assert f"edgeinfer: warning: {path}:1: cameras[0].source: no such device (yet?): /dev/video97" in err


def test_stream_sources_are_never_opened_and_offline_touches_no_network(tmp_path, capsys, monkeypatch):
    import cv2

    def no_network(*args, **kwargs):
        raise AssertionError("the check touched the network")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(cv2, "VideoCapture", no_network)
    path = write(
        tmp_path,
        """\
        cameras:
          - {name: a, source: "rtsp://admin:${CAM_PW:-x}@cam.lan/s1"}
          - {name: b, source: "http://cam2.lan/video.mjpg"}
        mqtt: {host: broker.lan}
        influxdb: {url: "http://tsdb.lan:8086", bucket: b}
        """,
    )
    code, out, err = check(capsys, path, "--offline")
    assert code == 0, err
    assert "ok (2 camera(s)" in out


def test_host_names_that_do_not_resolve_are_warnings_at_their_keys(tmp_path, capsys, monkeypatch):
    looked_up = []

    def fake_getaddrinfo(host, *args, **kwargs):
        looked_up.append(host)
        if host.endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.9", 0))]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    path = write(
        tmp_path,
        """\
        cameras:
          - {name: a, source: "rtsp://cam.invalid/s1"}
          - {name: b, source: "rtsp://10.0.0.5/s1"}
        mqtt:
          host: broker.invalid
        influxdb: {url: "http://tsdb.lan:8086", bucket: b}
        """,
    )
    code, out, err = check(capsys, path)
    assert code == 0 and ": ok (" in out
    assert sorted(looked_up) == ["broker.invalid", "cam.invalid", "tsdb.lan"]  # an IP is not looked up
    warnings = [line for line in err.splitlines() if line.startswith("edgeinfer: warning:")]
    assert warnings == [
        f"edgeinfer: warning: {path}:5: mqtt.host: cannot resolve host 'broker.invalid': "
        "Name or service not known (--offline skips this)",
        f"edgeinfer: warning: {path}:2: cameras[0].source: cannot resolve host 'cam.invalid': "
        "Name or service not known (--offline skips this)",
    ]


def test_check_and_show_take_dash_c_and_the_positional_file(tmp_path, capsys):
    path = write(tmp_path, f"device: pole-7\ncameras: [{{name: a, source: {SYNTHETIC}}}]\n")
    for argv in (
        ["check", "-c", path, "--offline"],
        ["check", "--config", path, "--offline"],
        ["check", path, "--offline"],
    ):
        assert main(["config", *map(str, argv)]) == 0
        assert f"{path}: ok (1 camera(s)" in capsys.readouterr().out
    for argv in (["show", "-c", path], ["show", path], ["show", "-c", path, path]):
        assert main(["config", *map(str, argv)]) == 0
        assert "device: pole-7" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv", [["check"], ["check", "-c", "a.yaml", "b.yaml"], ["show", "-c", "a.yaml", "b.yaml"]]
)
def test_a_missing_or_doubled_file_is_a_usage_error(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(["config", *argv])
    assert info.value.code == 2
    assert "usage: edgeinfer config" in capsys.readouterr().err


def test_show_without_a_file_is_the_embedded_default(capsys):
    assert main(["config", "show"]) == 0
    assert "name: demo" in capsys.readouterr().out


def test_config_errors_still_come_before_the_deeper_checks(tmp_path, capsys):
    path = write(tmp_path, "cameras:\n  - name: a\n    source: 0\n    fps: fast\n")
    code, _, err = check(capsys, path, "--offline")
    assert code == 2 and f"{path}:4: cameras[0].fps: Input should be a valid number" in err


def test_the_bundled_model_files_are_where_the_check_looks(tmp_path):
    with pytest.raises(ConfigError, match=r"detector\.model: .*is a directory"):
        load_config(write(tmp_path, f"detector: {{model: {bundled_dir()}}}\n"))
