"""The seam between the capture thread and the things that produce images."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class FrameReader(Protocol):
    """Produces BGR uint8 HxWx3 images, one per :meth:`read`.

    ``live`` is True when frames arrive at the camera's pace and must be read continuously (devices,
    RTSP/HTTP streams, GStreamer pipelines); False when they can be produced on demand (files, image
    folders, synthetic scenes).
    """

    live: bool

    def open(self) -> None:
        """Open (or reopen from the start) the source. Raises SourceError."""
        ...

    def read(self) -> np.ndarray | None:
        """The next image, or None at the end of the stream. Raises SourceError on a read error."""
        ...

    def close(self) -> None:
        """Release the source. Safe to call twice or without a successful open."""
        ...

    def describe(self) -> str:
        """A human-readable name for logs, with credentials redacted."""
        ...
