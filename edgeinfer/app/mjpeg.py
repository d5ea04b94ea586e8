"""Multipart MJPEG framing (``multipart/x-mixed-replace``), the format browsers show in an ``<img>``.

Each JPEG is followed at once by the delimiter and the next part's headers, not by the delimiter alone:
Chromium shows a part only once the next part's header block has arrived, so a stream that sent headers
before each frame would show every frame one frame late, and the last frame of a camera that stopped
never. The price is no ``Content-Length`` per part (a part's headers go out before its JPEG exists);
readers find the parts by the delimiter, as RFC 2046 has them do.
"""

from __future__ import annotations

BOUNDARY = "edgeinfer-frame"
CONTENT_TYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
PART_HEADERS = b"Content-Type: image/jpeg\r\n\r\n"
OPENING = f"--{BOUNDARY}\r\n".encode() + PART_HEADERS  # the first part's delimiter and headers
DELIMITER = f"\r\n--{BOUNDARY}\r\n".encode()  # closes a part and opens the next


def part(jpeg: bytes) -> bytes:
    """One JPEG, then the delimiter and headers of the part after it (the stream starts with OPENING)."""
    return jpeg + DELIMITER + PART_HEADERS
