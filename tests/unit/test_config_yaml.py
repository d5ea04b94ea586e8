"""Hostile or broken YAML gives one clear line, never a traceback or gigabytes: bombs, depth, encodings."""

import textwrap

import pytest
import yaml

from edgeinfer.cli import main
from edgeinfer.config import load_config
from edgeinfer.config.loader import ALIAS_BUDGET, MAX_DEPTH
from edgeinfer.errors import ConfigError

CAMERA = "cameras: [{name: a, source: 0}]\n"


def write(tmp_path, text, name="edgeinfer.yaml"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text))
    return path


def billion_laughs(levels=9, width=9):
    lines = [CAMERA.rstrip(), 'lol0: &l0 "lol"']
    for i in range(1, levels + 1):
        lines.append(f"lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def one_line_error(path):
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def test_billion_laughs_is_refused_at_the_alias_that_breaks_the_budget(tmp_path):
    # 9**9 = 387 million strings once expanded: the old loader grew past 3 GB on this.
    path = write(tmp_path, billion_laughs())
    message = one_line_error(path)
    assert message.startswith(f"{path}:")
    line = int(message.removeprefix(f"{path}:").split(":")[0])
    assert billion_laughs().splitlines()[line - 1].startswith("lol")
    assert f"aliases expand to more than {ALIAS_BUDGET} values" in message


def test_billion_laughs_through_the_cli_is_exit_2_without_traceback(tmp_path, capsys):
    assert main(["config", "check", str(write(tmp_path, billion_laughs()))]) == 2
    err = capsys.readouterr().err
    assert "aliases expand to more than" in err and "Traceback" not in err


def test_ordinary_anchors_and_merge_keys_still_work_and_keep_their_lines(tmp_path):
    path = write(
        tmp_path,
        """\
        shared: &cam {source: 0, fps: 5, zones: [[[0, 0], [9, 0], [9, 9]]]}
        cameras:
          - <<: *cam
            name: a
          - <<: *cam
            name: b
            fps: 7
          - <<: *cam
            name: c
            fpz: 1
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    lines = str(info.value).splitlines()
    assert f"{path}:10: cameras[2].fpz: Extra inputs are not permitted" in lines
    assert f"{path}:1: shared: Extra inputs are not permitted" in lines
    path.write_text(path.read_text().replace("    fpz: 1\n", "").replace("shared: &cam", "x-: &cam"))
    with pytest.raises(ConfigError, match=r"edgeinfer.yaml:1: x-: Extra inputs"):
        load_config(path)


def test_anchors_shared_by_cameras_validate(tmp_path):
    cfg = load_config(
        write(
            tmp_path,
            """\
            cameras:
              - {name: a, source: 0, zones: &z [[[0, 0], [9, 0], [9, 9]]]}
              - {name: b, source: 1, zones: *z}
            """,
        )
    )
    assert cfg.cameras[1].zones == cfg.cameras[0].zones


def test_an_alias_loop_is_refused(tmp_path):
    path = write(tmp_path, CAMERA + "x: &a [1, *a]\n")
    message = one_line_error(path)
    assert message.startswith(f"{path}:2: not accepted: alias *a") and "loop" in message


def test_20000_deep_yaml_is_one_line_not_a_recursion_error(tmp_path):
    path = write(tmp_path, "cameras: " + "[" * 20000 + "]" * 20000 + "\n")
    message = one_line_error(path)
    assert message.startswith(f"{path}:1: ") and "nest" in message


def test_nesting_beyond_the_limit_is_refused_by_the_loader_itself(tmp_path):
    depth = MAX_DEPTH + 5  # below libyaml's own limit (1000), so this is ours
    message = one_line_error(write(tmp_path, CAMERA + "x: " + "[" * depth + "]" * depth + "\n"))
    assert message == f"{tmp_path / 'edgeinfer.yaml'}:2: not accepted: nested deeper than {MAX_DEPTH} levels"


def test_deep_nesting_through_aliases_is_refused(tmp_path):
    lines = [CAMERA.rstrip(), "a0: &a0 [1]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, MAX_DEPTH + 5)]
    message = one_line_error(write(tmp_path, "\n".join(lines) + "\n"))
    assert "nested deeper than" in message and "through alias" in message


def test_a_config_that_is_not_utf8_names_the_line(tmp_path):
    path = write(tmp_path, "cameras:\n  - name: caf\xe9\n    source: 0\n".encode("latin-1"))
    assert one_line_error(path) == (
        f"{path}:2: not UTF-8 text (byte 0xe9 at column 14): save the file as UTF-8"
    )


def test_a_control_character_names_the_line(tmp_path):
    path = write(tmp_path, CAMERA + 'device: "box\x07"\n')
    assert one_line_error(path) == f"{path}:2: not valid YAML: character #x0007 is not allowed in YAML text"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: &x 1\nb: &x 2\n", r"edgeinfer.yaml:2: not valid YAML: second occurrence|duplicate anchor"),
        ("a: *nope\n", r"edgeinfer.yaml:1: not valid YAML: found undefined alias"),
        ("a: 1\n---\nb: 2\n", r"edgeinfer.yaml:\d: not valid YAML: but found another document"),
    ],
)
def test_other_composer_errors_are_one_line(tmp_path, text, expected):
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_the_yaml_is_parsed_once(tmp_path, monkeypatch):
    """One pass composes the node tree; data and error lines both come from it."""

    def refuse(*args, **kwargs):
        raise AssertionError("a second parse of the config")

    for name in ("safe_load", "load", "compose", "compose_all", "load_all", "safe_load_all"):
        monkeypatch.setattr(yaml, name, refuse)
    cfg = load_config(write(tmp_path, "cameras:\n  - name: a\n    source: 0\n    fps: 5\n"))
    assert cfg.cameras[0].fps == 5
    with pytest.raises(ConfigError, match=r"edgeinfer.yaml:4: cameras\[0\]\.fps: Input should be greater"):
        load_config(write(tmp_path, "cameras:\n  - name: a\n    source: 0\n    fps: -5\n"))


def test_yaml_scalars_mean_what_safe_load_says(tmp_path):
    text = "a: [1, 1.5, true, null, '0x1', 0x1f, 2001-12-14, ~, -.inf, !!str 3, {k: v}]\n"
    from edgeinfer.config.loader import parse_yaml

    assert parse_yaml(text, "x").data == yaml.safe_load(text)
