"""The one RFC 3339 formatter (events, stats, JSON logs)."""

import json
import logging
import re

from edgeinfer.logs import JsonFormatter
from edgeinfer.timefmt import rfc3339_ms, rfc3339_now

PATTERN = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$")  # the schemas' ts


def test_milliseconds_are_truncated_and_utc():
    assert rfc3339_ms(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339_ms(1_790_000_000_999_999_999) == "2026-09-21T14:13:20.999Z"
    assert rfc3339_ms(1_764_201_600_123_000_000) == "2025-11-27T00:00:00.123Z"
    assert PATTERN.match(rfc3339_now())


def test_json_logs_use_it():
    record = logging.LogRecord("edgeinfer.x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    record.created, record.msecs = 1_790_000_000.0429, 42.9
    entry = json.loads(JsonFormatter().format(record))
    assert entry == {
        "ts": "2026-09-21T14:13:20.042Z",
        "level": "info",
        "logger": "edgeinfer.x",
        "msg": "hello you",
    }
