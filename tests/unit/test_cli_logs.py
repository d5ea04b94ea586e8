"""Logs as the CLI sets them up: text lines carry date and zone, and what native libraries print on the
C-level stderr is captured into logging (levels honoured, one JSON object per line in JSON mode)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeinfer.logs import TextFormatter, native_level
from edgeinfer.timefmt import rfc3339_local_ms, rfc3339_ms

REPO = Path(__file__).resolve().parents[2]
T = 1_790_000_000_123_456_789  # 2026-09-21T14:13:20.123Z (summer time in Berlin)
WINTER = 1_800_000_000_000_000_000  # 2027-01-15T08:00:00Z


@pytest.fixture
def zone(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    def set_zone(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield set_zone
    monkeypatch.undo()
    time.tzset()


def test_local_times_carry_their_zone(zone) -> None:  # type: ignore[no-untyped-def]
    zone("UTC")
    assert rfc3339_local_ms(T) == rfc3339_ms(T) == "2026-09-21T14:13:20.123Z"
    zone("Europe/Berlin")
    assert rfc3339_local_ms(T) == "2026-09-21T16:13:20.123+02:00"
    assert rfc3339_local_ms(WINTER) == "2027-01-15T09:00:00.000+01:00"
    zone("America/St_Johns")
    assert rfc3339_local_ms(WINTER) == "2027-01-15T04:30:00.000-03:30"


def test_text_log_lines_start_with_date_time_and_zone(zone) -> None:  # type: ignore[no-untyped-def]
    record = logging.LogRecord("edgeinfer.x", logging.WARNING, __file__, 1, "hello %s", ("you",), None)
    record.created, record.msecs = 1_790_000_000.0429, 42.9
    zone("UTC")
    assert TextFormatter().format(record) == "2026-09-21T14:13:20.042Z WARNING edgeinfer.x: hello you"
    zone("Europe/Berlin")
    assert TextFormatter().format(record) == "2026-09-21T16:13:20.042+02:00 WARNING edgeinfer.x: hello you"


@pytest.mark.parametrize(
    ("line", "level"),
    [
        ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", logging.INFO),
        ("WARNING: failed to allocate", logging.WARNING),
        ("ERROR: tensor too large", logging.ERROR),
        (
            "[ WARN:0@0.012] global cap_v4l.cpp:913 open VIDEOIO(V4L2:/dev/video9): can't open camera",
            logging.WARNING,
        ),
        ("[ERROR:0@1.5] global cap.cpp:164 open VIDEOIO(CV_IMAGES): raised OpenCV exception", logging.ERROR),
        ("[ INFO:0@0.001] global plugin_loader.impl.hpp:67 initialize Plugin", logging.INFO),
        ("[DEBUG:0@0.001] global x", logging.DEBUG),
        (
            "[tcp @ 0x5581c0d2a2c0] Connection to tcp://10.0.0.5:554 failed: Connection refused",
            logging.WARNING,
        ),
        ("W0000 00:00:1700000000.123 1234 x.cc:1] something", logging.WARNING),
        ("Segmentation fault in something we do not know", logging.WARNING),
    ],
)
def test_native_lines_get_the_level_their_library_gave_them(line: str, level: int) -> None:
    assert native_level(line) == level


_PROBE = r"""
import os, sys, warnings
from edgeinfer.logs import setup_logging
native = setup_logging(sys.argv[1], sys.argv[2], capture_native=True)
# what LiteRT, OpenCV and FFmpeg print: straight onto file descriptor 2, past Python
os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
os.write(2, b"[ WARN:0@0.012] global cap_v4l.cpp:913 open can't open camera by index\n[tcp @ 0x55d0] Connection refused\n")
os.write(2, b"no newline at the end")
import logging
logging.getLogger("edgeinfer.app").info("a log record")
print("a stray print on sys.stderr", file=sys.stderr)
warnings.warn("a python warning")
print("stdout is untouched")
native.close()
"""


def _probe(level: str, fmt: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _PROBE, level, fmt],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
        env={**os.environ, "TZ": "UTC"},
    )


def test_native_output_becomes_json_log_records() -> None:
    result = _probe("INFO", "json")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "stdout is untouched\n"
    records = [json.loads(line) for line in result.stderr.splitlines()]  # every line is one JSON object
    native = [(r["level"], r["msg"]) for r in records if r["logger"] == "native"]
    assert native == [
        ("info", "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."),
        ("warning", "[ WARN:0@0.012] global cap_v4l.cpp:913 open can't open camera by index"),
        ("warning", "[tcp @ 0x55d0] Connection refused"),
        ("warning", "no newline at the end"),
    ]
    others = {r["logger"]: r["msg"] for r in records if r["logger"] != "native"}
    assert others["edgeinfer.app"] == "a log record"
    assert others["stderr"] == "a stray print on sys.stderr"
    assert "a python warning" in others["py.warnings"]


def test_native_output_obeys_the_log_level_in_text_mode() -> None:
    result = _probe("WARNING", "text")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert not any("XNNPACK" in line or "a log record" in line for line in lines)  # INFO: not shown
    assert any(line.endswith("WARNING native: [tcp @ 0x55d0] Connection refused") for line in lines)
    assert all(line[:4].isdigit() and "Z " in line[:30] for line in lines if "native" in line)
    assert "a stray print on sys.stderr" in lines  # text mode: Python's own stderr is left as it is


def test_native_levels_reach_the_libraries_own_settings() -> None:
    from edgeinfer.logs import native_environment

    assert native_environment("ERROR") == {"OPENCV_LOG_LEVEL": "ERROR", "TF_CPP_MIN_LOG_LEVEL": "2"}
    # OpenCV prints INFO and DEBUG on stdout, and OPENCV_FFMPEG_LOGLEVEL moves FFmpeg's lines there too
    assert native_environment("DEBUG")["OPENCV_LOG_LEVEL"] == "WARNING"
    assert all("OPENCV_FFMPEG_LOGLEVEL" not in native_environment(level) for level in ("DEBUG", "ERROR"))
    probe = (
        "import os; from edgeinfer.logs import setup_logging; n = setup_logging('ERROR', 'text', "
        "capture_native=True); print(os.environ['OPENCV_LOG_LEVEL'], os.environ['TF_CPP_MIN_LOG_LEVEL']); "
        "n.close()"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OPENCV_LOG_LEVEL", "TF_CPP_MIN_LOG_LEVEL")}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.stdout.split() == ["ERROR", "2"], result.stderr
