"""cv2.VideoCapture readers: devices, network streams, GStreamer pipelines and video files."""

from __future__ import annotations

import functools
import logging
import re
import sys
from pathlib import Path

import cv2
import numpy as np

from edgeinfer.errors import SourceError
from edgeinfer.sources.kinds import SourceKind, source_kind
from edgeinfer.sources.redact import redact_url

logger = logging.getLogger(__name__)

_LIVE_KINDS = {SourceKind.DEVICE, SourceKind.STREAM, SourceKind.GSTREAMER}
STREAM_TIMEOUT_MS = 10_000  # open and read timeouts for network streams


@functools.cache
def has_gstreamer() -> bool:
    """Whether this OpenCV build has the GStreamer videoio backend (pip wheels do not)."""
    match = re.search(r"^\s*GStreamer:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    return match is not None and match.group(1).upper() not in {"NO", "OFF"}


def _to_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return image


class OpenCVReader:
    """Reads a device index or /dev/videoN, an rtsp/http URL, a GStreamer pipeline, or a video file."""

    def __init__(self, source: int | str, *, width: int | None = None, height: int | None = None) -> None:
        self.source = source
        self.kind = source_kind(source)
        if self.kind not in _LIVE_KINDS | {SourceKind.FILE}:
            raise SourceError(
                f"{redact_url(str(source))}: not a source OpenCVReader handles ({self.kind.value})"
            )
        self.live = self.kind in _LIVE_KINDS
        self.width = width
        self.height = height
        self._cap: cv2.VideoCapture | None = None

    def describe(self) -> str:
        if self.kind is SourceKind.DEVICE:
            return f"device {self.source}"
        return redact_url(str(self.source))

    def _capture_args(self) -> tuple[int | str, int, list[int]]:
        """(what to pass to VideoCapture, API preference, open parameters)."""
        if self.kind is SourceKind.DEVICE:
            target: int | str = self.source
            if isinstance(target, str) and target.strip().isdigit():
                target = int(target)
            api = (
                cv2.CAP_V4L2 if sys.platform.startswith("linux") and hasattr(cv2, "CAP_V4L2") else cv2.CAP_ANY
            )
            return target, api, []
        if self.kind is SourceKind.STREAM:
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
                STREAM_TIMEOUT_MS,
                cv2.CAP_PROP_READ_TIMEOUT_MSEC,
                STREAM_TIMEOUT_MS,
            ]
            return str(self.source).strip(), cv2.CAP_FFMPEG, params
        if self.kind is SourceKind.GSTREAMER:
            if not has_gstreamer():
                raise SourceError(
                    f"{self.describe()}: this is a GStreamer pipeline, but OpenCV was built without "
                    "GStreamer (pip's opencv-python is); use a system OpenCV with GStreamer, or an "
                    "rtsp:// URL or a device instead"
                )
            return str(self.source).strip(), cv2.CAP_GSTREAMER, []
        path = Path(str(self.source)).expanduser()
        if not path.is_file():
            raise SourceError(f"{self.describe()}: no such video file")
        return str(path), cv2.CAP_ANY, []

    def open(self) -> None:
        self.close()
        target, api, params = self._capture_args()
        try:
            cap = cv2.VideoCapture(target, api, params)
        except cv2.error as exc:
            raise SourceError(
                f"{self.describe()}: OpenCV could not open it: {redact_url(str(exc))}"
            ) from None
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.describe()}: OpenCV could not open it ({self.kind.value})")
        if self.kind is SourceKind.STREAM:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # keep latency low; not every backend honours it
        if self.kind is SourceKind.DEVICE:
            if self.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            if self.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        self._cap = cap
        logger.debug(
            "%s: opened (%dx%d, %.1f fps reported)",
            self.describe(),
            int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            cap.get(cv2.CAP_PROP_FPS),
        )

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            raise SourceError(f"{self.describe()}: read before open")
        try:
            ok, image = self._cap.read()
        except cv2.error as exc:
            raise SourceError(f"{self.describe()}: read failed: {redact_url(str(exc))}") from None
        if not ok or image is None:
            return None  # end of a file; for a live source the capture treats it as a lost stream
        return _to_bgr(image)

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()
