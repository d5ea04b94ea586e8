"""Pick a FrameReader for a camera from its source value."""

from __future__ import annotations

from collections.abc import Callable

from edgeinfer.config import CameraConfig, SyntheticSourceConfig
from edgeinfer.sources.base import FrameReader
from edgeinfer.sources.images import ImageFolderReader
from edgeinfer.sources.kinds import SourceKind, source_kind
from edgeinfer.sources.opencv import OpenCVReader
from edgeinfer.sources.synthetic import SyntheticReader


def _opencv(camera: CameraConfig) -> FrameReader:
    assert not isinstance(camera.source, SyntheticSourceConfig)
    return OpenCVReader(camera.source, width=camera.width, height=camera.height)


def _folder(camera: CameraConfig) -> FrameReader:
    assert isinstance(camera.source, str)
    return ImageFolderReader(camera.source.strip())


def _synthetic(camera: CameraConfig) -> FrameReader:
    assert isinstance(camera.source, SyntheticSourceConfig)
    return SyntheticReader(camera.source)


READERS: dict[SourceKind, Callable[[CameraConfig], FrameReader]] = {
    SourceKind.DEVICE: _opencv,
    SourceKind.STREAM: _opencv,
    SourceKind.GSTREAMER: _opencv,
    SourceKind.FILE: _opencv,
    SourceKind.FOLDER: _folder,
    SourceKind.SYNTHETIC: _synthetic,
}


def open_reader(camera: CameraConfig) -> FrameReader:
    """A new, not yet opened reader for ``camera`` (the capture thread calls ``open()``).

    Raises SourceError only for a source no reader handles; opening errors come from ``open()``.
    """
    return READERS[source_kind(camera.source)](camera)
