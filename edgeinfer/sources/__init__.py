"""Frame sources: readers for each kind of camera source, and the per-camera capture thread.

Nothing here is registered at import time: :func:`open_reader` picks a reader from a dispatch table.
"""

from edgeinfer.sources.base import FrameReader
from edgeinfer.sources.capture import Capture
from edgeinfer.sources.factory import open_reader
from edgeinfer.sources.kinds import SourceKind, source_kind
from edgeinfer.sources.redact import describe_source, redact_url

__all__ = [
    "Capture",
    "FrameReader",
    "SourceKind",
    "describe_source",
    "open_reader",
    "redact_url",
    "source_kind",
]
