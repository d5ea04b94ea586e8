"""``config check`` beyond the schema: what can be checked without opening a camera.

The model file exists and loads (the detector is opened once for its class names); the classes the
cameras name (``classes``, ``min_score`` keys) are classes of that model; video files, image folders,
a labels file and TLS files exist. rtsp/http sources are never opened; unless ``offline``, the host
names of the broker, the TSDB and stream cameras are looked up in DNS (a failure is a warning: the
network at check time need not be the one the daemon runs on).

Each finding is a YAML location and a message, so the command prints ``file:line: path: message``.
"""

from __future__ import annotations

import difflib
import ipaddress
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from edgeinfer.config.loader import LoadedConfig, Loc
from edgeinfer.config.schema import Config, SyntheticSourceConfig
from edgeinfer.errors import EdgeInferError

DNS_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Finding:
    loc: Loc
    message: str


@dataclass
class CheckReport:
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    labels: list[str] | None = None  # the model's class names, when it loaded

    def error(self, loc: Loc, message: str) -> None:
        self.errors.append(Finding(loc, message))

    def warn(self, loc: Loc, message: str) -> None:
        self.warnings.append(Finding(loc, message))


def check_config(
    loaded: LoadedConfig, *, offline: bool = False, dns_timeout: float = DNS_TIMEOUT_S
) -> CheckReport:
    """Everything but cameras themselves; ``offline`` skips whatever would touch the network (DNS)."""
    config, report = loaded.config, CheckReport()
    _check_files(config, report)
    labels_ok = not any(f.loc == ("detector", "labels") for f in report.errors)
    if labels_ok:
        report.labels = _check_model(config, report)
    if report.labels is not None:
        _check_classes(config, report.labels, report)
    if not offline:
        _check_dns(config, report, dns_timeout)
    return report


# --------------------------------------------------------------------------- files


def _missing_file(path: Path, what: str) -> str | None:
    path = path.expanduser()
    if not path.exists():
        return f"{what} not found: {path}"
    if not path.is_file():
        return f"{what} {path} is not a file"
    return None


def _check_files(config: Config, report: CheckReport) -> None:
    from edgeinfer.media import IMAGE_SUFFIXES
    from edgeinfer.sources.kinds import SourceKind, source_kind

    if config.detector.labels is not None:
        problem = _missing_file(config.detector.labels, "labels file")
        if problem:
            report.error(("detector", "labels"), problem)
    tls = config.mqtt.tls if config.mqtt else None
    if tls is not None:
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(tls, key)
            if path is not None and (problem := _missing_file(path, key.replace("_", " "))):
                report.error(("mqtt", "tls", key), problem)
    if config.data_dir.exists() and not config.data_dir.is_dir():
        report.error(("data_dir",), f"{config.data_dir} is not a directory")

    for index, camera in enumerate(config.cameras):
        loc: Loc = ("cameras", index, "source")
        source = camera.source
        if isinstance(source, int | SyntheticSourceConfig):
            continue
        kind = source_kind(source)
        path = Path(source.strip()).expanduser()
        if kind is SourceKind.FILE:
            if not path.exists():
                report.error(loc, f"video file not found: {path}")
            elif not path.is_file():
                report.error(loc, f"{path} is not a video file")
        elif kind is SourceKind.FOLDER:
            try:
                images = [p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
            except OSError as exc:
                report.error(loc, f"image folder {path}: cannot list it: {exc.strerror}")
                continue
            if not images:
                report.error(loc, f"image folder {path} has no {'/'.join(sorted(IMAGE_SUFFIXES))} files")
        elif kind is SourceKind.DEVICE and source.strip().startswith("/dev/") and not path.exists():
            # A camera may be plugged in later, so this one is a warning.
            report.warn(loc, f"no such device (yet?): {path}")


# --------------------------------------------------------------------------- model and classes


def _check_model(config: Config, report: CheckReport) -> list[str] | None:
    """Open the detector once, as the daemon does, and return its class names (None if it fails)."""
    detector_cfg = config.detector
    try:
        from edgeinfer.detect.build import open_detector

        detector = open_detector(detector_cfg)
    except EdgeInferError as exc:
        message = str(exc)
        key = "sha256" if detector_cfg.sha256 and "sha256" in message else "model"
        report.error(("detector", key), message)
        return None
    except Exception as exc:  # a runtime's own error on a file it cannot read: still one line
        report.error(("detector", "model"), f"the model does not load: {type(exc).__name__}: {exc}")
        return None
    try:
        return list(detector.labels)
    finally:
        detector.close()


def _unknown(name: str, labels: list[str]) -> str:
    close = difflib.get_close_matches(name, labels, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    shown = ", ".join(labels[:20]) + (f", ... ({len(labels)} in all)" if len(labels) > 20 else "")
    return f"{name!r} is not a class of the model{hint}; it knows: {shown}"


def _check_classes(config: Config, labels: list[str], report: CheckReport) -> None:
    known = set(labels)
    for index, camera in enumerate(config.cameras):
        for j, name in enumerate(camera.classes or []):
            if name not in known:
                report.error(("cameras", index, "classes", j), _unknown(name, labels))
        for name in camera.min_score:
            if name not in known:
                report.error(("cameras", index, "min_score", name), _unknown(name, labels))


# --------------------------------------------------------------------------- network (DNS only)


def _hosts(config: Config) -> list[tuple[Loc, str]]:
    from edgeinfer.sources.kinds import SourceKind, source_kind

    hosts: list[tuple[Loc, str]] = []
    if config.mqtt is not None:
        hosts.append((("mqtt", "host"), config.mqtt.host))
    if config.influxdb is not None:
        hosts.append((("influxdb", "url"), urlsplit(config.influxdb.url).hostname or ""))
    for index, camera in enumerate(config.cameras):
        source = camera.source
        if isinstance(source, str) and source_kind(source) is SourceKind.STREAM:
            try:
                host = urlsplit(source.strip()).hostname or ""
            except ValueError:
                continue
            hosts.append((("cameras", index, "source"), host))
    return [(loc, host) for loc, host in hosts if host and not _is_ip(host)]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_dns(config: Config, report: CheckReport, timeout: float) -> None:
    hosts = _hosts(config)
    results: dict[str, str | None] = {}

    def resolve(host: str) -> None:
        try:
            socket.getaddrinfo(host, None)
            results[host] = None
        except (OSError, UnicodeError) as exc:
            results[host] = getattr(exc, "strerror", None) or str(exc)

    # Daemon threads: a resolver that hangs past the timeout must not hold the command's exit.
    threads = [
        threading.Thread(target=resolve, args=(h,), daemon=True) for h in dict.fromkeys(h for _, h in hosts)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    for loc, host in hosts:
        if host not in results:
            report.warn(loc, f"no DNS answer for {host!r} within {timeout:g} s (--offline skips this)")
        elif results[host] is not None:
            report.warn(loc, f"cannot resolve host {host!r}: {results[host]} (--offline skips this)")
