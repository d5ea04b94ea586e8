"""Which config values are secrets: redaction for ``config show``, and finding secrets written inline.

URL passwords (``rtsp://user:pw@host``, ``?token=...``) are found by edgeinfer.sources.redact, the same
code that keeps them out of the logs; it is imported when needed (edgeinfer.sources imports OpenCV).
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "********"
"""What ``config show`` prints for a secret value; the loader refuses it as a value (see schema)."""
URL_REDACTED = "***"
"""What redact_url puts in place of a URL password, in logs and in ``config show``."""

_SECRET_KEY = re.compile(
    r"(?:^|_)(?:password|passwd|passphrase|pwd|pass|token|secret|api_?key|access_key|private_key|"
    r"credentials?)$",
    re.IGNORECASE,
)
_ENV_REF = re.compile(r"\$\{[^}]*\}")
_URL_PLACEHOLDER = re.compile(
    r"://[^:/@\s]*:\*\*\*@|[?&;](?:password|passwd|pwd|pass|token|access_token|api_key|apikey|key|secret|auth)"
    r"=\*\*\*(?:[&;#\s]|$)",
    re.IGNORECASE,
)

Loc = tuple[str | int, ...]


def is_secret_key(name: object) -> bool:
    """``password``, ``token``, ``client_secret``, ``api_key``...; never ``password_file`` (a path)."""
    return isinstance(name, str) and bool(_SECRET_KEY.search(name))


def redact_url(text: str) -> str:
    from edgeinfer.sources.redact import redact_url as redact

    return redact(text)


def redact(value: Any) -> Any:
    """Plain data with every secret-named key's value as REDACTED and every URL password as ``***``."""
    if isinstance(value, dict):
        return {
            k: REDACTED if is_secret_key(k) and v not in (None, "") else redact(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    if isinstance(value, str) and (":" in value or "=" in value):
        return redact_url(value)
    return value


def has_url_placeholder(text: str) -> bool:
    """A URL whose password is the ``***`` that logs and ``config show`` print instead of it."""
    return "***" in text and bool(_URL_PLACEHOLDER.search(text))


def _inline_in_string(text: str) -> bool:
    # ${VAR} stands in for the secret: mask it with what redaction writes, so only other text counts.
    masked = _ENV_REF.sub(URL_REDACTED, text)
    return redact_url(masked) != masked


def inline_secrets(data: Any, path: Loc = ()) -> list[Loc]:
    """Where raw (not yet ${ENV}-substituted) config data holds a secret as a literal value."""
    found: list[Loc] = []
    if isinstance(data, dict):
        for key, value in data.items():
            here = (*path, key)
            if is_secret_key(key) and value not in (None, "") and not isinstance(value, dict | list):
                if not (isinstance(value, str) and _ENV_REF.search(value)):
                    found.append(here)
            else:
                found += inline_secrets(value, here)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += inline_secrets(value, (*path, index))
    elif isinstance(data, str) and ("@" in data or "=" in data) and _inline_in_string(data):
        found.append(path)
    return found
