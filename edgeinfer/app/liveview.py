"""One annotated JPEG of a frame for the live page: scaled down to the live width first (drawing and
encoding a 640-px image costs a fraction of a full-size one), then zones and lines, then each detection's
box with its label, score and track id (when the detections carry ``track_id``; without tracking they do
not, and the label goes without it).

Runs on the live hub's encoder thread, never on the detection path; OpenCV releases the GIL while it
resizes and encodes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from edgeinfer.detect.detections import Detections, label_of

JPEG_QUALITY = 75
_PALETTE = [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72)]
_ZONE = (255, 200, 0)
_LINE = (255, 0, 255)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True, slots=True)
class Overlay:
    """A camera's zones and lines in source pixels, each with a name (list-form zones are numbered)."""

    zones: tuple[tuple[str, np.ndarray], ...] = ()
    lines: tuple[tuple[str, np.ndarray], ...] = ()

    @classmethod
    def of(cls, camera: Any) -> Overlay:
        """From a camera's config: ``zones`` as a list or a ``{name: polygon}`` map, ``lines`` as a map
        (absent in configs without them)."""
        return cls(_named(getattr(camera, "zones", None)), _named(getattr(camera, "lines", None)))


def _named(shapes: Mapping[str, Any] | Iterable[Any] | None) -> tuple[tuple[str, np.ndarray], ...]:
    if not shapes:
        return ()
    items = shapes.items() if isinstance(shapes, Mapping) else enumerate(shapes)
    return tuple(
        (str(name), np.asarray(getattr(shape, "polygon", shape), np.float64).reshape(-1, 2))  # a ZoneConfig
        for name, shape in items
    )


def render_jpeg(
    image: np.ndarray,
    dets: Detections,
    labels: list[str],
    overlay: Overlay = Overlay(),
    *,
    width: int = 640,
    quality: int = JPEG_QUALITY,
) -> bytes:
    """The annotated frame as JPEG bytes, at most ``width`` pixels wide (never scaled up)."""
    height_px, width_px = image.shape[:2]
    scale = min(1.0, width / width_px)
    if scale < 1.0:
        size = (max(1, round(width_px * scale)), max(1, round(height_px * scale)))
        out = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    else:
        out = image.copy()  # the frame is shared with the pipeline: never draw on it
    for name, polygon in overlay.zones:
        points = np.round(polygon * scale).astype(np.int32)
        cv2.polylines(out, [points], True, _ZONE, 2, cv2.LINE_AA)
        _tag(out, name, points[0], _ZONE)
    for name, line in overlay.lines:
        a, b = (tuple(int(v) for v in np.round(p * scale)) for p in line[:2])
        cv2.line(out, a, b, _LINE, 2, cv2.LINE_AA)
        _tag(out, name, np.asarray(a), _LINE)
    track_ids = getattr(dets, "track_id", None)  # set once tracking has run
    for i, (box, score, cls) in enumerate(zip(dets.xyxy, dets.confidence, dets.class_id, strict=True)):
        colour = _PALETTE[int(cls) % len(_PALETTE)]
        x1, y1, x2, y2 = (round(float(v) * scale) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, 2)
        text = f"{label_of(labels, int(cls))} {float(score):.2f}"
        track_id = None if track_ids is None or i >= len(track_ids) else track_ids[i]
        if track_id is not None and str(track_id) != "-1":
            text = f"#{track_id} {text}"
        _tag(out, text, np.array([x1, y1]), colour)
    ok, encoded = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # only for an image OpenCV cannot encode (a bug upstream of here)
        raise ValueError(f"cannot encode a {out.shape} {out.dtype} image as JPEG")
    return encoded.tobytes()


def _tag(image: np.ndarray, text: str, at: np.ndarray, colour: tuple[int, int, int]) -> None:
    """``text`` on a filled box just above ``at`` (inside the image)."""
    (tw, th), _ = cv2.getTextSize(text, _FONT, 0.45, 1)
    x, top = int(at[0]), max(int(at[1]) - th - 4, 0)
    cv2.rectangle(image, (x, top), (x + tw + 4, top + th + 4), colour, -1)
    cv2.putText(image, text, (x + 2, top + th + 1), _FONT, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
