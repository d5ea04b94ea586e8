"""Config for tracking: named zones (and the old list form), lines, tracking keys, homeassistant; errors
name the YAML path and line."""

from __future__ import annotations

import re
import textwrap

import pytest

from edgeinfer.config import Config, dump_yaml, load_config
from edgeinfer.errors import ConfigError
from edgeinfer.tracking import decoder_conf


def write(tmp_path, text):  # type: ignore[no-untyped-def]
    path = tmp_path / "edgeinfer.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_named_zones_lines_and_tracking_defaults(tmp_path):
    cfg = load_config(
        write(
            tmp_path,
            """
            cameras:
              - name: dock
                source: 0
                zones:
                  bay: [[0, 0], [10, 0], [10, 10]]
                  door: {polygon: [[0, 0], [5, 0], [5, 5]], objects: [square]}
                lines: {gate: [[0, 0], [0, 10]]}
            """,
        )
    )
    cam = cfg.cameras[0]
    assert list(cam.zones) == ["bay", "door"]
    assert cam.zones["door"].objects == ["square"] and cam.zones["bay"].objects is None
    assert not any(z.filter for z in cam.zones.values())  # named zones count, they do not filter
    assert cam.lines == {"gate": [(0.0, 0.0), (0.0, 10.0)]}
    t = cam.tracking
    assert (t.enabled, t.min_hits, t.max_age_s, t.high_conf, t.low_conf) == (True, 3, 2.0, 0.6, 0.1)
    assert cfg.homeassistant is None and cfg.storage.snapshots_max_bytes == 64 * 2**20


def test_the_old_list_form_keeps_meaning_filter_zones(tmp_path):
    cfg = load_config(
        write(tmp_path, "cameras:\n  - {name: a, source: 0, zones: [[[0, 0], [9, 0], [9, 9]]]}\n")
    )
    zone = cfg.cameras[0].zones["zone0"]
    assert zone.filter is True and zone.polygon == [(0, 0), (9, 0), (9, 9)]


def test_config_show_round_trips(tmp_path):
    text = """
    cameras:
      - name: a
        source: 0
        zones: [[[0, 0], [9, 0], [9, 9]]]
        lines: {gate: [[0, 0], [0, 10]]}
        tracking: {min_hits: 2}
    mqtt: {host: localhost}
    homeassistant: {discovery_prefix: ha}
    """
    cfg = load_config(write(tmp_path, text))
    again = load_config(write(tmp_path, dump_yaml(cfg)))
    assert again == cfg


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "cameras:\n  - name: a\n    source: 0\n    zones:\n      door: [[0, 0], [1, 1]]\n",
            r"edgeinfer.yaml:5: cameras\[0\]\.zones\.door: a zone needs at least 3 points, got 2",
        ),
        (
            "cameras:\n  - name: a\n    source: 0\n    lines:\n      gate: [[0, 0]]\n",
            r"edgeinfer.yaml:5: cameras\[0\]\.lines\.gate: a line is 2 points \[\[x1, y1\], \[x2, y2\]\], got 1",
        ),
        (
            "cameras:\n  - name: a\n    source: 0\n    zones:\n      all: [[0, 0], [1, 0], [1, 1]]\n",
            r"edgeinfer.yaml:5: cameras\[0\]\.zones\.all: 'all': expected a name like a camera's",
        ),
        (
            "cameras:\n  - name: a\n    source: 0\n    zones: {x: [[0, 0], [1, 0], [1, 1]]}\n"
            "    lines:\n      x: [[0, 0], [1, 1]]\n",
            r"edgeinfer.yaml:6: cameras\[0\]\.lines\.x: 'x' is a zone's name too",
        ),
        (
            "cameras:\n  - name: a\n    source: 0\n    tracking:\n      low_conf: 0.7\n",
            r"edgeinfer.yaml:5: cameras\[0\]\.tracking\.low_conf: must be at most high_conf \(0.6\)",
        ),
        (
            "cameras:\n  - name: a\n    source: 0\n    tracking:\n      min_hits: 0\n",
            r"edgeinfer.yaml:5: cameras\[0\]\.tracking\.min_hits: Input should be greater than or equal to 1",
        ),
        (
            "cameras: [{name: a, source: 0}]\nhomeassistant: {discovery_prefix: ha}\n",
            r"edgeinfer.yaml:2: homeassistant: needs an mqtt: section",
        ),
    ],
)
def test_errors_name_the_path_and_line(tmp_path, text, expected):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert re.search(expected, str(info.value)), str(info.value)


def test_decoder_conf_goes_down_to_the_lowest_low_conf_of_a_tracking_camera():
    cfg = Config.model_validate(
        {
            "cameras": [
                {"name": "a", "source": 0, "tracking": {"low_conf": 0.15}},
                {"name": "b", "source": 1, "tracking": {"enabled": False, "low_conf": 0.05}},
            ]
        }
    )
    assert decoder_conf(cfg) == 0.15
    off = Config.model_validate({"cameras": [{"name": "a", "source": 0, "tracking": {"enabled": False}}]})
    assert decoder_conf(off) == off.detector.conf
