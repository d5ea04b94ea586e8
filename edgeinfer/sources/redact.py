"""Remove credentials from source strings before they reach a log line or an error message."""

from __future__ import annotations

import re

# scheme://user:password@host -> scheme://user:***@host. The password may contain a raw '@' (people
# write that), so it runs to the last '@' before the path, query or whitespace.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):(?P<secret>[^/?#\s]*)@")
# ?password=...&token=... style secrets in the query string
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&;](?:password|passwd|pwd|pass|token|access_token|api_key|apikey|key|secret|auth)=)"
    r"(?P<secret>[^&;#\s]*)",
    re.IGNORECASE,
)


def redact_url(text: str) -> str:
    """Replace passwords in every URL inside ``text`` (a URL or a GStreamer pipeline) with ``***``."""
    text = _USERINFO.sub(r"\g<head>:***@", text)
    return _QUERY_SECRET.sub(r"\g<head>***", text)


def describe_source(source: object) -> str:
    """A loggable description of a CameraConfig.source value."""
    if isinstance(source, int):
        return f"device {source}"
    if isinstance(source, str):
        return redact_url(source)
    kind = getattr(source, "type", None)
    if kind == "synthetic":
        # duck-typed: importing the config models here would make this tiny module pull in pydantic
        return f"synthetic(seed={source.seed}, {source.width}x{source.height})"  # type: ignore[attr-defined]
    return type(source).__name__
