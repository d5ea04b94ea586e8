"""The live page's config keys: http.live_fps, live_width, username, password_file (redacted in show)."""

import logging
import textwrap

import pytest

from edgeinfer.config import dump_yaml, load_config
from edgeinfer.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "edgeinfer.yaml"
    path.write_text("cameras: [{name: a, source: 0}]\n" + textwrap.dedent(text))
    path.chmod(0o600)
    return path


def test_defaults(tmp_path):
    http = load_config(write(tmp_path, "")).http
    assert (http.live_fps, http.live_width, http.username, http.password) == (5.0, 640, None, None)


def test_the_password_comes_from_its_file_and_is_redacted_in_show(tmp_path, caplog):
    (tmp_path / "pw").write_text("pole-cam-secret\n")
    with caplog.at_level(logging.DEBUG):
        cfg = load_config(write(tmp_path, f"http: {{username: viewer, password_file: {tmp_path / 'pw'}}}\n"))
    assert cfg.http.password.get_secret_value() == "pole-cam-secret"
    shown = dump_yaml(cfg)
    assert "pole-cam-secret" not in shown and "pole-cam-secret" not in repr(cfg)
    assert "password: '********'" in shown and f"password_file: {tmp_path / 'pw'}" in shown
    assert "pole-cam-secret" not in caplog.text


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            "http: {username: viewer}\n",
            r"edgeinfer.yaml:\d+: http\.password_file: http\.username is set: expected password_file too",
        ),
        ("http: {live_fps: 0}\n", r"edgeinfer.yaml:\d+: http\.live_fps: .*greater than 0"),
        ("http: {live_fps: 60}\n", r"edgeinfer.yaml:\d+: http\.live_fps: .*less than or equal to 30"),
        ("http: {live_width: 32}\n", r"edgeinfer.yaml:\d+: http\.live_width: .*greater than or equal to 64"),
        ("http: {user: viewer}\n", r"edgeinfer.yaml:\d+: http\.user: "),
    ],
)
def test_bad_http_keys_name_their_path(tmp_path, text, error):
    with pytest.raises(ConfigError, match=error):
        load_config(write(tmp_path, text))


def test_a_password_without_a_username_is_refused(tmp_path):
    (tmp_path / "pw").write_text("x\n")
    with pytest.raises(ConfigError, match=r"http\.username: a password is set: expected the username"):
        load_config(write(tmp_path, f"http: {{password_file: {tmp_path / 'pw'}}}\n"))
