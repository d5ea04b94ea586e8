"""Multipart MJPEG framing (``multipart/x-mixed-replace``), the format browsers show in an ``<img>``.

The delimiter is sent once before the first part and then right after each JPEG, not before the next
one: a browser shows a part when it sees the delimiter that closes it, so a frame appears when it is
sent, not one frame late. Each part says its ``Content-Length`` so a reader need not scan the JPEG for
the delimiter.
"""

from __future__ import annotations

BOUNDARY = "edgeinfer-frame"
CONTENT_TYPE = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
OPENING = f"--{BOUNDARY}\r\n".encode()


def part(jpeg: bytes) -> bytes:
    """One JPEG as a part, closed by the delimiter (the stream starts with :data:`OPENING`)."""
    head = f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
    return head + jpeg + b"\r\n" + OPENING
