"""Which kind of source a CameraConfig.source value names."""

from __future__ import annotations

import enum
import re
from pathlib import Path

from edgeinfer.config import SyntheticSourceConfig

_STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class SourceKind(enum.Enum):
    DEVICE = "device"  # integer index, "0", or /dev/...
    STREAM = "stream"  # rtsp://, http://, ...
    GSTREAMER = "gstreamer"  # a pipeline string containing '!'
    FOLDER = "folder"  # a directory of images
    FILE = "file"  # anything else: a video file path
    SYNTHETIC = "synthetic"


def source_kind(source: int | str | SyntheticSourceConfig) -> SourceKind:
    """Classify a source value. Only FOLDER looks at the filesystem (is the path a directory?)."""
    if isinstance(source, SyntheticSourceConfig):
        return SourceKind.SYNTHETIC
    if isinstance(source, bool):
        raise TypeError(f"a camera source cannot be a boolean: {source!r}")
    if isinstance(source, int):
        return SourceKind.DEVICE
    text = source.strip()
    if "!" in text:
        return SourceKind.GSTREAMER
    match = _SCHEME.match(text)
    if match and match.group(1).lower() in _STREAM_SCHEMES:
        return SourceKind.STREAM
    if text.isdigit() or text.startswith("/dev/"):
        return SourceKind.DEVICE
    if Path(text).expanduser().is_dir():
        return SourceKind.FOLDER
    return SourceKind.FILE
