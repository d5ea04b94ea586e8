"""Line protocol: parsing what sensors send, and format_point -> parse_line round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeinfer.lineprotocol import (
    FieldValue,
    LineProtocolError,
    ParsedPoint,
    carried,
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


# --------------------------------------------------------------------------- names line protocol cannot carry

FORGED = (
    "person\nforged,device=other count=1i 1700000000000000000\ninference e2e_ms=0.0 1700000000000000000\n"
)


def test_label_with_line_breaks_cannot_write_other_series() -> None:
    """The probe: a label from a labels file or model metadata with "\\n" wrote 3 foreign series."""
    tags = {"device": "box\nevil v=1i 1", "camera": "dock", "label": FORGED, "model": "m"}
    text = format_point("detections", tags, {"count": 2, "max_score": 0.9}, 1_790_000_000_000_000_000)
    assert "\n" not in text and "\r" not in text
    points = parse_lines(text)
    assert len(points) == 1
    assert points[0].measurement == "detections"
    assert points[0].tags == {k: carried(v) for k, v in tags.items()}
    assert (
        points[0].tags["label"]
        == "person\ufffdforged,device=other count=1i 1700000000000000000\ufffdinference e2e_ms=0.0 1700000000000000000\ufffd"
    )
    assert points[0].fields == {"count": 2, "max_score": 0.9}


@pytest.mark.parametrize(
    ("measurement", "tags", "fields", "expected"),
    [
        ("#m", {}, {"f": 1}, ParsedPoint("\ufffdm", {}, {"f": 1}, 5)),
        ("m", {"k\r": "a\x00b"}, {"f\x85": 1.5}, ParsedPoint("m", {"k\ufffd": "a\ufffdb"}, {"f\ufffd": 1.5}, 5)),
        ("m", {}, {"s": 'a\nb\tc"\\'}, ParsedPoint("m", {}, {"s": 'a\ufffdb\tc"\\'}, 5)),
        ("m\ud800", {"t": "\udfff"}, {"f": True}, ParsedPoint("m\ufffd", {"t": "\ufffd"}, {"f": True}, 5)),
        ("m", {"a\n": "1", "a\r": "2"}, {"f": 1}, ParsedPoint("m", {"a\ufffd": "2"}, {"f": 1}, 5)),
        ("m", {"t": "a\\"}, {"f\\": 1}, ParsedPoint("m", {"t": "a\\"}, {"f\\": 1}, 5)),
    ],
)  # fmt: skip
def test_characters_line_protocol_cannot_carry_are_replaced(
    measurement: str, tags: dict[str, str], fields: dict[str, FieldValue], expected: ParsedPoint
) -> None:
    text = format_point(measurement, tags, fields, 5)
    text.encode("utf-8")  # no lone surrogate left
    assert parse_lines(text) == [expected]


@pytest.mark.parametrize(
    ("measurement", "tags", "fields"),
    [("", {}, {"f": 1}), ("m", {"": "x"}, {"f": 1}), ("m", {}, {"": 1}), ("m", {}, {})],
)
def test_empty_names_are_refused(
    measurement: str, tags: dict[str, str], fields: dict[str, FieldValue]
) -> None:
    with pytest.raises(ValueError, match=r"empty|at least one field"):
        format_point(measurement, tags, fields, 1)


# Every character, with the ones that matter for line protocol drawn often.
_SPECIALS = list('\n\r\t\\ ,="#\x00\x0b\x7f\x85\u2028\u3000\ud800\udfff')
_hostile = st.text(alphabet=st.one_of(st.sampled_from(_SPECIALS), st.characters()), min_size=1, max_size=10)
_hostile_value = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet=st.one_of(st.sampled_from(_SPECIALS), st.characters()), max_size=10),
)
_hostile_point = st.tuples(
    _hostile,
    st.dictionaries(_hostile, st.one_of(st.just(""), _hostile), max_size=3),
    st.dictionaries(_hostile, _hostile_value, min_size=1, max_size=3),
    st.integers(min_value=-(2**62), max_value=2**62),
)


def expected_point(
    measurement: str, tags: dict[str, str], fields: dict[str, FieldValue], ts_ns: int
) -> ParsedPoint:
    """What any line protocol parser must read back from format_point's line."""
    want_tags = {carried(k): carried(tags[k]) for k in sorted(tags) if tags[k] != ""}
    want_fields = {
        carried(k, "field"): carried(v, "string") if isinstance(v, str) else v for k, v in fields.items()
    }
    return ParsedPoint(carried(measurement, "measurement"), want_tags, want_fields, ts_ns)


@settings(max_examples=300, deadline=None)
@given(st.lists(_hostile_point, min_size=1, max_size=5))
def test_hostile_names_give_one_point_each_and_read_back(points: list[tuple]) -> None:  # type: ignore[type-arg]
    text = "\n".join(format_point(*point) for point in points)
    text.encode("utf-8")
    assert parse_lines(text) == [expected_point(*point) for point in points]


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"))))
def test_carried_is_the_identity_for_what_line_protocol_can_carry(text: str) -> None:
    for part in ("tag", "field", "string"):
        assert carried(text, part) == text
    assert carried(text, "measurement") == text or text.startswith("#")
