"""Line protocol: parsing what sensors send, and format_point -> parse_line round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeinfer.lineprotocol import (
    FieldValue,
    LineProtocolError,
    ParsedPoint,
    format_point,
    parse_line,
    parse_lines,
)

VALID = [
    ("cpu value=1", ParsedPoint("cpu", {}, {"value": 1.0}, None)),
    ("cpu,host=a,region=eu value=1i 1700000000000000000", ParsedPoint("cpu", {"host": "a", "region": "eu"}, {"value": 1}, 1700000000000000000)),
    ("m f=-1.5e3,g=true,h=F,i=7u", ParsedPoint("m", {}, {"f": -1500.0, "g": True, "h": False, "i": 7}, None)),
    ('m s="a b, c=d" 5', ParsedPoint("m", {}, {"s": "a b, c=d"}, 5)),
    (r'm s="say \"hi\" \\ there"', ParsedPoint("m", {}, {"s": 'say "hi" \\ there'}, None)),
    (r"my\ meas,tag\ key=va\,l\=ue field\ key=.5", ParsedPoint("my meas", {"tag key": "va,l=ue"}, {"field key": 0.5}, None)),
    ("m f=1 -5", ParsedPoint("m", {}, {"f": 1.0}, -5)),
]  # fmt: skip

INVALID = [
    ("", "expected"),
    ("cpu", "expected"),
    ("cpu ", "invalid field"),
    (",t=1 f=1", "empty measurement"),
    ("cpu,host f=1", "invalid tag"),
    ("cpu,host= f=1", "invalid tag"),
    ("cpu f=", "invalid field"),
    ("cpu =1", "invalid field"),
    ("cpu f=abc", "invalid value"),
    ("cpu f=NaN", "invalid value"),
    ("cpu f=1e999", "not finite"),
    ("cpu f=9223372036854775808i", "out of range"),
    ('cpu f="open', "unterminated"),
    ("cpu f=1 12x", "invalid timestamp"),
    ("cpu f=1 99999999999999999999", "invalid timestamp"),
    ("cpu f=1\r2", "control character"),
]


@pytest.mark.parametrize(("line", "expected"), VALID)
def test_parse_line_valid(line: str, expected: ParsedPoint) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize(("line", "message"), INVALID)
def test_parse_line_invalid(line: str, message: str) -> None:
    with pytest.raises(LineProtocolError, match=message):
        parse_line(line)


def test_parse_lines_skips_blank_and_comments_and_names_the_bad_line() -> None:
    points = parse_lines("# comment\n\na f=1\r\nb g=2i 3\n")
    assert [(p.measurement, p.ts_ns) for p in points] == [("a", None), ("b", 3)]
    with pytest.raises(LineProtocolError, match="line 2"):
        parse_lines("a f=1\nb g=\n")


_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\\"),
    min_size=1,
    max_size=12,
)
_value = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=12),
)


@settings(max_examples=60, deadline=None)
@given(
    measurement=_text.filter(lambda s: not s.startswith("#") and s.strip() == s),
    tags=st.dictionaries(_text, _text, max_size=3),
    fields=st.dictionaries(_text, _value, min_size=1, max_size=4),
    ts_ns=st.integers(min_value=0, max_value=2**62),
)
def test_format_then_parse_round_trips(
    measurement: str, tags: dict[str, str], fields: dict[str, FieldValue], ts_ns: int
) -> None:
    point = parse_line(format_point(measurement, tags, fields, ts_ns))
    assert point == ParsedPoint(measurement, tags, fields, ts_ns)
