"""HTTP basic auth for the live page and its API (``http.username`` and ``http.password_file``).

Both parts are compared in constant time (``hmac.compare_digest``) and both always, so the answer takes
as long for a wrong user as for a wrong password. The password is kept as a ``SecretStr`` until it is
compared and is never logged.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress

from pydantic import SecretStr

REALM = "edgeinfer"
CHALLENGE = f'Basic realm="{REALM}", charset="UTF-8"'


class BasicAuth:
    def __init__(self, username: str, password: SecretStr) -> None:
        self._username = username.encode()
        self._password = password

    def allows(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries this user and password."""
        if not authorization:
            return False
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "basic" or not token:
            return False
        try:
            decoded = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, colon, password = decoded.partition(b":")
        if not colon:
            return False
        user_ok = hmac.compare_digest(user, self._username)
        password_ok = hmac.compare_digest(password, self._password.get_secret_value().encode())
        return user_ok and password_ok

    def __repr__(self) -> str:
        return "BasicAuth(username=..., password=**********)"


def insecure_listen_warning(host: str, has_auth: bool) -> str | None:
    """The startup warning for a page served beyond this machine without auth (None: nothing to say)."""
    if has_auth or _loopback(host):
        return None
    return (
        f"http: listening on {host or '*'} without http.username/password_file: the live page, its "
        "camera images and the API are open to anyone who can reach this port"
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False
