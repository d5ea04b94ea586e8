"""Logging setup, done only by the CLI: human-readable text, or one JSON object per line.

Text lines start with the local date, time and zone (``2026-12-01T21:38:17.123+01:00``, or ``...Z``
where local time is UTC), as ``edgeinfer events`` shows times; JSON lines carry the UTC ``ts``.

Native libraries (LiteRT, OpenCV, FFmpeg) print on the C-level stderr, file descriptor 2, past Python's
logging: ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.``, ``[ WARN:0@1.2] global cap.cpp...``,
``[tcp @ 0x5581...] Connection refused``. :func:`capture_native_output` points descriptor 2 at a pipe whose
reader thread logs each line under the ``native`` logger, at the level the line names, so those lines obey
``--log-level`` and come out as JSON with ``--log-format json``. Python's own ``sys.stderr`` and the
logging handler keep writing to the real stderr (a copy of the old descriptor 2).
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import os
import re
import sys
import threading
from types import TracebackType
from typing import TextIO

from edgeinfer.timefmt import rfc3339_local_ms, rfc3339_ms

NATIVE_LOGGER = "native"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # the record's whole seconds and its own msecs: what logging itself shows as ,mmm
        entry = {
            "ts": rfc3339_ms(int(record.created) * 1_000_000_000 + int(record.msecs) * 1_000_000),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``2026-12-01T21:38:17.123+01:00 INFO    edgeinfer.app: message``: date, time and zone first."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return rfc3339_local_ms(int(record.created) * 1_000_000_000 + int(record.msecs) * 1_000_000)


# --------------------------------------------------------------------------- native output

# What each library's own level names map to. Lines that name none are WARNING: something on stderr
# that no library marked as chatter is worth seeing.
_NATIVE_LEVELS = {
    "VERBOSE": logging.DEBUG,
    "VERB": logging.DEBUG,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "FATAL": logging.CRITICAL,
}
_LEVEL_PATTERNS = (
    re.compile(r"^(VERBOSE|DEBUG|INFO|WARNING|ERROR|FATAL):"),  # LiteRT / TFLite minimal logging
    re.compile(r"^\[ ?(VERB|DEBUG|INFO|WARN|ERROR|FATAL)[:\]]"),  # OpenCV: [ WARN:0@0.012] ...
)
_GLOG = re.compile(r"^([IWEF])\d{4} ")  # absl/glog: W0000 00:00:1700000000.1 ... (TensorFlow, XLA)
_GLOG_LEVELS = {"I": logging.INFO, "W": logging.WARNING, "E": logging.ERROR, "F": logging.CRITICAL}


def native_level(line: str) -> int:
    """The logging level a native library gave ``line``; WARNING when it gave none (FFmpeg's
    ``[tcp @ 0x...]`` lines get here only at or above the level edgeinfer set for FFmpeg)."""
    for pattern in _LEVEL_PATTERNS:
        if match := pattern.match(line):
            return _NATIVE_LEVELS[match.group(1)]
    if match := _GLOG.match(line):
        return _GLOG_LEVELS[match.group(1)]
    return logging.WARNING


def native_environment(level: str) -> dict[str, str]:
    """The libraries' own level settings for ``--log-level``: less is printed in the first place.

    OpenCV reads OPENCV_LOG_LEVEL when cv2 is imported; it writes WARNING and above to stderr but INFO and
    DEBUG to *stdout*, so it is never set below WARNING (stdout is edgeinfer's output: ``detect --json``).
    OPENCV_FFMPEG_LOGLEVEL is left alone on purpose: setting it makes OpenCV install an FFmpeg log callback
    that printf()s to stdout, while unset FFmpeg logs errors only, to stderr, where they are captured.
    TensorFlow's C++ logging reads TF_CPP_MIN_LOG_LEVEL (LiteRT's own INFO lines ignore it: captured).
    """
    opencv = "ERROR" if level == "ERROR" else "WARNING"
    tf = {"DEBUG": "0", "INFO": "0", "WARNING": "1", "ERROR": "2"}[level]
    return {"OPENCV_LOG_LEVEL": opencv, "TF_CPP_MIN_LOG_LEVEL": tf}


_OPENCV_LEVELS = {"DEBUG": 3, "INFO": 3, "WARNING": 3, "ERROR": 2}  # cv2.setLogLevel: LOG_LEVEL_*


class _LinesToLog(io.TextIOBase):
    """A text stream that logs each line written to it (``sys.stderr`` in JSON mode: stray prints too
    come out as JSON objects)."""

    def __init__(self, logger: logging.Logger, level: int) -> None:
        super().__init__()
        self._logger, self._level, self._buffer = logger, level, ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._buffer += text
            *lines, self._buffer = re.split(r"\r\n|\r|\n", self._buffer)
        for line in lines:
            if line.strip():
                self._logger.log(self._level, "%s", line)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            line, self._buffer = self._buffer, ""
        if line.strip():
            self._logger.log(self._level, "%s", line)


class NativeOutput:
    """Descriptor 2 redirected into logging; :meth:`close` puts it back (also at exit)."""

    def __init__(self, level: str, fmt: str, handler: logging.StreamHandler[TextIO]) -> None:
        for name, value in native_environment(level).items():
            os.environ.setdefault(name, value)  # the user's own setting wins
        cv2 = sys.modules.get("cv2")  # imported already: the environment came too late for it
        if cv2 is not None and hasattr(cv2, "setLogLevel"):
            cv2.setLogLevel(_OPENCV_LEVELS[level])
        sys.stderr.flush()
        self._saved_fd = os.dup(2)
        self.real_stderr: TextIO = open(  # noqa: SIM115 - open for the rest of the process
            self._saved_fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False
        )
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self._read_fd = read_fd
        self._logger = logging.getLogger(NATIVE_LOGGER)
        self._thread = threading.Thread(target=self._pump, name="native-stderr", daemon=True)
        self._thread.start()
        self._handler = handler
        handler.setStream(self.real_stderr)
        self._saved_stderr = sys.stderr
        self._saved_hooks = (sys.excepthook, threading.excepthook)
        if fmt == "json":
            sys.stderr = _LinesToLog(logging.getLogger("stderr"), logging.WARNING)
            logging.captureWarnings(True)
            sys.excepthook = _log_uncaught
            threading.excepthook = _log_uncaught_in_thread
        else:
            sys.stderr = self.real_stderr
        self._closed = False
        atexit.register(self.close)

    def _pump(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self._read_fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._emit(line)
        if pending:
            self._emit(pending)
        os.close(self._read_fd)

    def _emit(self, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="backslashreplace").rstrip("\r").rstrip()
        if line.strip():
            self._logger.log(native_level(line), "%s", line)

    def close(self) -> None:
        """Put descriptor 2 back and log what was still in the pipe (waits up to 1 s for it)."""
        if self._closed:
            return
        self._closed = True
        if isinstance(sys.stderr, _LinesToLog):
            sys.stderr.flush()
        os.dup2(self._saved_fd, 2)  # closes the pipe's write end held by descriptor 2: the reader sees EOF
        self._thread.join(timeout=1.0)  # a child process that inherited the pipe may still hold it open
        sys.stderr = self._saved_stderr
        sys.excepthook, threading.excepthook = self._saved_hooks
        logging.captureWarnings(False)
        self._handler.setStream(self._saved_stderr)
        self.real_stderr.flush()
        atexit.unregister(self.close)


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    logging.getLogger("edgeinfer").critical("uncaught exception", exc_info=(kind, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    exc = args.exc_value if args.exc_value is not None else args.exc_type()
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("edgeinfer").critical(
        "uncaught exception in thread %s", name, exc_info=(args.exc_type, exc, args.exc_traceback)
    )


def capture_native_output(level: str, fmt: str, handler: logging.StreamHandler[TextIO]) -> NativeOutput:
    """Send what native libraries print on descriptor 2 through logging (see the module docstring)."""
    return NativeOutput(level, fmt, handler)


def setup_logging(
    level: str = "INFO", fmt: str = "text", *, capture_native: bool = False
) -> NativeOutput | None:
    """The root handler on stderr; with ``capture_native``, native stderr is captured too (the CLI does
    this for the verbs that load a model or open cameras). Returns the capture, to close, or None."""
    handler: logging.StreamHandler[TextIO] = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "influxdb_client"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    if not capture_native:
        return None
    return capture_native_output(level, fmt, handler)
