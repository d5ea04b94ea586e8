"""Config loading: defaults, env substitution, secret files, and errors that name the YAML path and line."""

import re
import textwrap

import pytest

from edgeinfer.config import dump_yaml, load_config
from edgeinfer.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "edgeinfer.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_minimal_config_fills_defaults(tmp_path):
    cfg = load_config(write(tmp_path, "cameras:\n  - {name: dock, source: {type: synthetic}}\n"))
    assert cfg.detector.model == "bundled" and cfg.detector.conf == 0.25
    assert cfg.batching.max_batch_size == 4 and cfg.batching.max_staleness_ms == 500
    assert cfg.http.listen == "127.0.0.1:9108"
    assert cfg.mqtt is None and cfg.influxdb is None
    assert cfg.cameras[0].events == "on_change"


def test_sizes_and_durations_take_units(tmp_path):
    cfg = load_config(
        write(tmp_path, "storage: {max_bytes: 64MiB, retention: 12h}\ncameras: [{name: a, source: 0}]\n")
    )
    assert cfg.storage.max_bytes == 64 * 2**20
    assert cfg.storage.retention == 12 * 3600


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "cameras:\n  - name: dock\n    source: 0\n    fps: -3\n",
            r"edgeinfer.yaml:4: cameras\[0\]\.fps: Input should be greater than 0",
        ),
        (
            "cameras:\n  - name: dock\n    sauce: 0\n",
            r"edgeinfer.yaml:3: cameras\[0\]\.sauce: Extra inputs are not permitted",
        ),
        ("cameras:\n  - name: dock\n", r"edgeinfer.yaml:2: cameras\[0\]\.source: Field required"),
        (
            "batching:\n  max_batch_size: many\n",
            r"edgeinfer.yaml:2: batching\.max_batch_size: Input should be a valid integer",
        ),
        ("storage:\n  retention: forever\n", r"storage\.retention: expected a duration such as 7d"),
        ("detector:\n  backend: cuda\n", r"detector\.backend: Input should be 'auto', 'litert'"),
        (
            "cameras:\n  - {name: a, source: 0}\n  - {name: a, source: 1}\n",
            r"camera names must be unique, repeated: a",
        ),
        (
            "cameras:\n  - {name: a, source: 0, zones: [[[0, 0], [1, 1]]]}\n",
            r"a zone needs at least 3 points",
        ),
        ("mqtt: [1, 2]\n", r"edgeinfer.yaml:1: mqtt: Input should be a valid dictionary"),
        (
            "mqtt:\n  sensors:\n    - topic: sensors/#/{room}\n",
            r"edgeinfer.yaml:3: mqtt\.sensors\[0\]\.topic: topic template 'sensors/#/\{room\}': '#' must be the last",
        ),
        ("cameras: [\n", r"edgeinfer.yaml:\d+: not valid YAML"),
        (
            "mqtt: {username: edge, password: ${MQTT_PW}}\n",
            r"edgeinfer.yaml:1: not valid YAML: .*quote the variable",
        ),
        ("- just\n- a list\n", r"expected a mapping of sections"),
    ],
)
def test_errors_name_the_yaml_path_line_and_expectation(tmp_path, text, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, text))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.yaml")


def test_env_substitution_and_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_HOST", "broker.lan")
    cfg = load_config(
        write(
            tmp_path,
            """
        cameras: [{name: a, source: 0}]
        mqtt: {host: "${EDGE_HOST}", port: "${EDGE_PORT:-1884}"}
        """,
        )
    )
    assert cfg.mqtt.host == "broker.lan" and cfg.mqtt.port == 1884


def test_unset_env_variable_names_the_path(tmp_path, monkeypatch):
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    text = "cameras: [{name: a, source: 0}]\ninfluxdb:\n  url: http://x:8086\n  bucket: b\n  token: ${NOPE_TOKEN}\n"
    with pytest.raises(
        ConfigError, match=r"edgeinfer.yaml:5: influxdb\.token: environment variable NOPE_TOKEN is not set"
    ):
        load_config(write(tmp_path, text))


def test_secrets_from_files_are_redacted_in_show(tmp_path, monkeypatch):
    (tmp_path / "pw").write_text("hunter2-mqtt\n")
    monkeypatch.setenv("INFLUX_TOKEN", "s3cr3t-influx-token")
    cfg = load_config(
        write(
            tmp_path,
            f"""
        cameras: [{{name: a, source: 0}}]
        mqtt: {{username: edge, password_file: {tmp_path / "pw"}}}
        influxdb: {{url: "http://localhost:8086", bucket: b, token: "${{INFLUX_TOKEN}}"}}
        """,
        )
    )
    assert cfg.mqtt.password.get_secret_value() == "hunter2-mqtt"
    assert cfg.influxdb.token.get_secret_value() == "s3cr3t-influx-token"
    shown = dump_yaml(cfg)
    assert "hunter2" not in shown and "s3cr3t" not in shown
    assert "password: '********'" in shown and "token: '********'" in shown
    assert "hunter2" not in repr(cfg) and "s3cr3t" not in repr(cfg)


def test_unreadable_secret_file_is_a_config_error_at_its_key(tmp_path):
    # Was reported at `mqtt:` (line 2) with the key inside the message; now at the key's own line.
    text = (
        f"cameras: [{{name: a, source: 0}}]\nmqtt:\n  username: u\n  password_file: {tmp_path / 'missing'}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert str(info.value) == (
        f"{tmp_path / 'edgeinfer.yaml'}:4: mqtt.password_file: cannot read {tmp_path / 'missing'}: "
        "No such file or directory"
    )


def test_unreadable_token_file_is_a_config_error_at_its_key(tmp_path):
    text = (
        "cameras: [{name: a, source: 0}]\ninfluxdb:\n  url: http://x:8086\n  bucket: b\n"
        f"  token_file: {tmp_path}\n"
    )
    with pytest.raises(
        ConfigError, match=r"edgeinfer.yaml:5: influxdb\.token_file: cannot read .*: Is a directory$"
    ):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "cameras:\n  - name: a\n    source: 0\n  - name: b\n    source: 1\n  - name: a\n    source: 2\n",
            [
                r"edgeinfer.yaml:6: cameras\[2\]\.name: camera names must be unique, repeated: a \(also cameras\[0\]\)"
            ],
        ),
        (
            "cameras:\n  - {name: a, source: 0}\ntriggers:\n  - when: {series: s, above: 1}\n    fps: 5\n"
            "    camera: gate\n",
            [r"edgeinfer.yaml:6: triggers\[0\]\.camera: trigger camera 'gate' is not one of \['a'\]"],
        ),
        (
            "cameras:\n  - {name: a, source: 0}\n  - {name: a, source: 1}\ntriggers:\n"
            "  - {when: {series: s, above: 1}, fps: 5, camera: a}\n  - {when: {series: s, above: 1}, fps: 5, camera: b}\n",
            [
                r"edgeinfer.yaml:3: cameras\[1\]\.name: camera names must be unique",
                r"edgeinfer.yaml:6: triggers\[1\]\.camera: trigger camera 'b'",
            ],
        ),
    ],
)
def test_cross_field_errors_point_at_the_offending_key(tmp_path, text, expected):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    lines = str(info.value).splitlines()
    assert len(lines) == len(expected), lines
    for line, pattern in zip(lines, expected, strict=True):
        assert re.search(pattern, line), (pattern, line)


def test_show_redacts_url_passwords_and_secret_query_parameters(tmp_path):
    cfg = load_config(
        write(
            tmp_path,
            """
        cameras:
          - {name: gate, source: "rtsp://admin:s3cret-cam@10.0.0.5:554/s1"}
          - {name: snap, source: "https://cam.lan/snap.jpg?user=bob&password=hunter2&ch=1"}
          - {name: tok, source: "rtsp://cam.lan/live?token=abc123tok"}
          - name: gst
            source: "rtspsrc location=rtsp://u:gst-pw@cam/s ! decodebin ! appsink"
        influxdb: {url: "http://edge:influx-pw@localhost:8086", bucket: b}
        """,
        )
    )
    shown = dump_yaml(cfg)
    for secret in ("s3cret-cam", "hunter2", "abc123tok", "gst-pw", "influx-pw"):
        assert secret not in shown
    assert "rtsp://admin:***@10.0.0.5:554/s1" in shown and "password=***&ch=1" in shown
    assert "user=bob" in shown and "http://edge:***@localhost:8086" in shown


def test_redaction_covers_every_secret_named_key_and_keeps_the_file_paths():
    from edgeinfer.config.secrets import redact

    data = {
        "password": "a",
        "x": [{"api_key": "b", "client_secret": "c", "access_token": "d", "apikey": "e"}],
        "password_file": "/run/secrets/pw",
        "token_file": "/run/secrets/tok",
        "key_file": "client.key",
        "token": None,
        "username": "edge",
    }
    assert redact(data) == {
        "password": "********",
        "x": [
            {
                "api_key": "********",
                "client_secret": "********",
                "access_token": "********",
                "apikey": "********",
            }
        ],
        "password_file": "/run/secrets/pw",
        "token_file": "/run/secrets/tok",
        "key_file": "client.key",
        "token": None,
        "username": "edge",
    }


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            "mqtt: {{username: edge, password_file: {pw}}}",
            r"edgeinfer.yaml:\d+: mqtt\.password: '\*{8}' is how `config show` hides a secret.*password_file$",
        ),
        (
            'influxdb: {{url: "http://localhost:8086", bucket: b, token_file: {pw}}}',
            r"edgeinfer.yaml:\d+: influxdb\.token: '\*{8}' is how `config show` hides a secret.*token_file$",
        ),
    ],
)
def test_show_output_fed_back_never_takes_the_placeholder_for_the_secret(tmp_path, section, expected):
    # Before: the shown `password: '********'` beside `password_file` silently became the password.
    (tmp_path / "pw").write_text("hunter2-real\n")
    cfg = load_config(
        write(tmp_path, "cameras: [{name: a, source: 0}]\n" + section.format(pw=tmp_path / "pw"))
    )
    shown = dump_yaml(cfg)
    assert "hunter2" not in shown
    fed_back = tmp_path / "shown.yaml"
    fed_back.write_text(shown)
    with pytest.raises(ConfigError) as info:
        load_config(fed_back)
    assert re.fullmatch(expected.replace("edgeinfer.yaml", "shown.yaml"), str(info.value).split("/")[-1])
    # the error's line is the placeholder's own line
    line = int(str(info.value).split(":")[1])
    assert "'********'" in shown.splitlines()[line - 1]


def test_a_url_with_the_placeholder_password_is_refused(tmp_path):
    shown = "cameras:\n- name: gate\n  source: rtsp://admin:***@10.0.0.5/s1\n"
    with pytest.raises(
        ConfigError, match=r"edgeinfer.yaml:3: cameras\[0\]\.source: the password in this URL is '\*\*\*'"
    ):
        load_config(write(tmp_path, shown))
    cfg = load_config(write(tmp_path, "cameras:\n- name: gate\n  source: rtsp://admin:a***b@10.0.0.5/s1\n"))
    assert cfg.cameras[0].source == "rtsp://admin:a***b@10.0.0.5/s1"


def _readable_warnings(caplog):
    return [
        r
        for r in caplog.records
        if r.name == "edgeinfer.config" and "readable by group/others" in r.getMessage()
    ]


@pytest.mark.parametrize(
    ("text", "keys", "line"),
    [
        ("mqtt:\n  username: edge\n  password: hunter2-inline\n", "mqtt.password", 4),
        (
            "influxdb: {url: 'http://x:8086', bucket: b, token: tok-inline}\nmqtt: {password: '12345678'}\n",
            "influxdb.token, mqtt.password",
            2,
        ),
        ("cameras:\n  - {name: b, source: 'rtsp://admin:hunter2-inline@cam/s'}\n", "cameras[0].source", 3),
    ],
)
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_inline_secret_in_a_group_or_world_readable_file_warns_once(tmp_path, caplog, text, keys, line, mode):
    path = write(tmp_path, "cameras: [{name: a, source: 0}]\n" + text)
    path.chmod(mode)
    with caplog.at_level("WARNING"):
        load_config(path)
    (record,) = _readable_warnings(caplog)
    message = record.getMessage()
    assert message.startswith(f"{path}:{line}: holds secrets inline ({keys})")
    assert f"(mode {mode:04o})" in message and "chmod 600" in message
    assert "hunter2" not in message and "tok-inline" not in message and "12345678" not in message


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("mqtt: {password: hunter2-inline}\n", 0o600),
        ("mqtt: {password: hunter2-inline}\n", 0o400),
        ('mqtt: {password: "${MQTT_PW}"}\n', 0o644),
        ("mqtt: {password_file: /run/secrets/pw}\n", 0o644),
        ("cameras:\n  - {name: b, source: 'rtsp://admin:${CAM_PW}@cam/s'}\n", 0o644),
        ("cameras:\n  - {name: b, source: 'rtsp://admin@cam:554/s'}\n", 0o644),
    ],
)
def test_no_warning_without_an_inline_secret_or_for_a_private_file(tmp_path, caplog, monkeypatch, text, mode):
    monkeypatch.setenv("MQTT_PW", "x")
    monkeypatch.setenv("CAM_PW", "y")
    (tmp_path / "pw").write_text("pw\n")
    path = write(tmp_path, text.replace("/run/secrets/pw", str(tmp_path / "pw")))
    path.chmod(mode)
    with caplog.at_level("WARNING"):
        load_config(path)
    assert _readable_warnings(caplog) == []


def test_config_check_shows_the_permission_warning(tmp_path, capsys):
    from edgeinfer.cli import main

    path = write(
        tmp_path, "cameras: [{name: a, source: {type: synthetic}}]\nmqtt: {password: hunter2-inline}\n"
    )
    path.chmod(0o644)
    assert main(["config", "check", str(path)]) == 0
    err = capsys.readouterr().err
    assert err.count("readable by group/others") == 1 and "hunter2" not in err
