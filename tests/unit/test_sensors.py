"""Sensor input without a broker: topic templates, payload validation, context and triggers."""

from __future__ import annotations

import json
import math

import pytest
from prometheus_client import CollectorRegistry

from edgeinfer.config import MQTTConfig, SensorSubscription, TriggerCondition, TriggerConfig
from edgeinfer.errors import ConfigError
from edgeinfer.lineprotocol import FieldValue, parse_line
from edgeinfer.mqtt.topics import TopicTemplate
from edgeinfer.sensors.context import SensorContext
from edgeinfer.sensors.input import SensorInput
from edgeinfer.sensors.parse import REASONS, Rejected, parse_payload
from edgeinfer.sensors.triggers import Triggers

NOW = 1_790_000_000_000_000_000


@pytest.mark.parametrize(
    ("template", "topic_filter", "topic", "tags"),
    [
        ("sensors/{site}/{sensor}", "sensors/+/+", "sensors/hall/pir", {"site": "hall", "sensor": "pir"}),
        ("sensors/{site}/{sensor}", "sensors/+/+", "sensors/hall", None),
        ("sensors/{site}/{sensor}", "sensors/+/+", "sensors/hall/pir/x", None),
        ("sensors/{site}/{sensor}", "sensors/+/+", "other/hall/pir", None),
        ("sensors/{site}/{sensor}", "sensors/+/+", "sensors//pir", {"sensor": "pir"}),
        ("sensors/+/temp", "sensors/+/temp", "sensors/a/temp", {}),
        ("sensors/{site}/#", "sensors/+/#", "sensors/a/b/c", {"site": "a"}),
        ("sensors/{site}/#", "sensors/+/#", "sensors/a", {"site": "a"}),
        ("#", "#", "$SYS/broker/uptime", None),
        ("plain/topic", "plain/topic", "plain/topic", {}),
    ],
)
def test_topic_template(template: str, topic_filter: str, topic: str, tags: dict[str, str] | None) -> None:
    parsed = TopicTemplate(template)
    assert parsed.filter == topic_filter
    assert parsed.match(topic) == tags


@pytest.mark.parametrize("template", ["a/#/b", "a/b{c}", "a/{1x}", "a/x+", ""])
def test_topic_template_rejects(template: str) -> None:
    with pytest.raises(ValueError, match="topic template"):
        TopicTemplate(template)


JSON_SUB = SensorSubscription(
    topic="sensors/{site}/{sensor}", measurement="env", tags=["room"], timestamp_key="time"
)
VALUE_SUB = SensorSubscription(topic="sensors/{site}/{sensor}", measurement="raw", format="value")
# The line measurements these tests send are allow-listed: they are written as they are.
LINE_SUB = SensorSubscription(topic="sensors/{site}/{sensor}", format="line", measurements=["m", "a", "b"])
TOPIC = "sensors/hall/th1"


def _parse(sub: SensorSubscription, payload: bytes | str, topic: str = TOPIC, max_bytes: int = 1024):
    data = payload.encode() if isinstance(payload, str) else payload
    return parse_payload(sub, TopicTemplate(sub.topic), topic, data, now_ns=NOW, max_bytes=max_bytes)


@pytest.mark.parametrize(
    ("sub", "payload", "line", "values"),
    [
        (
            JSON_SUB,
            '{"temp": 21, "ok": true, "room": "r1", "note": "x", "n": null}',
            f"env,room=r1,sensor=th1,site=hall temp=21.0,ok=true {NOW}",
            {f"{TOPIC}/temp": 21.0, f"{TOPIC}/ok": True},
        ),
        (
            JSON_SUB,
            '{"a": {"b": {"c": 1.5}}, "time": "2026-11-26T23:59:01.123Z", "room": 7}',
            "env,room=7,sensor=th1,site=hall a_b_c=1.5 1795737541123000000",
            {f"{TOPIC}/a_b_c": 1.5},
        ),
        (JSON_SUB, '{"v": 2, "time": 1795737541}', "env,sensor=th1,site=hall v=2.0 1795737541000000000", None),
        (JSON_SUB, '{"v": 2, "time": 1795737541123}', "env,sensor=th1,site=hall v=2.0 1795737541123000000", None),
        (VALUE_SUB, " 3.25\n", f"raw,sensor=th1,site=hall value=3.25 {NOW}", {TOPIC: 3.25}),
        (VALUE_SUB, "-1e2", f"raw,sensor=th1,site=hall value=-100.0 {NOW}", {TOPIC: -100.0}),
        (LINE_SUB, "m,site=own f=1i,g=2 1795737541000000000", "m,sensor=th1,site=own f=1i,g=2.0 1795737541000000000",
         {f"{TOPIC}/f": 1, f"{TOPIC}/g": 2.0}),
        (LINE_SUB, "m f=true", f"m,sensor=th1,site=hall f=true {NOW}", None),
    ],
)  # fmt: skip
def test_valid_payloads(sub, payload, line, values) -> None:
    parsed = _parse(sub, payload)
    assert [text for _, text in parsed.lines] == [line]
    assert parsed.lines[0][0] == parse_line(line).ts_ns
    if values is not None:
        assert parsed.values == values


def test_multi_line_payload_gives_one_point_per_line() -> None:
    parsed = _parse(LINE_SUB, "a f=1 1795737541000000000\nb g=2 1795737542000000000\n")
    assert [parse_line(text).measurement for _, text in parsed.lines] == ["a", "b"]


DEEP = '{"a":' * 6 + "1" + "}" * 6
VERY_DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    ("sub", "payload", "reason"),
    [
        (JSON_SUB, "x" * 5000, "oversized"),
        (JSON_SUB, b"\xff\xfe{}", "not_utf8"),
        (JSON_SUB, '{"a": 1}\0', "not_utf8"),
        (JSON_SUB, "{temp: 1}", "not_json"),
        (JSON_SUB, "", "not_json"),
        (JSON_SUB, "[1, 2]", "not_object"),
        (JSON_SUB, "42", "not_object"),
        (JSON_SUB, '{"t": NaN}', "non_finite"),
        (JSON_SUB, '{"t": -Infinity}', "non_finite"),
        (JSON_SUB, '{"t": 1e999}', "non_finite"),
        (JSON_SUB, '{"t": 1' + "0" * 400 + "}", "non_finite"),
        (JSON_SUB, DEEP, "too_deep"),
        (JSON_SUB, '{"t": [1, 2]}', "bad_type"),
        (JSON_SUB, '{"t": 1, "room": {"x": 1}}', "bad_tag"),
        (JSON_SUB, '{"t": 1, "room": "a\\nb"}', "bad_tag"),
        (JSON_SUB, '{"t\\n": 1}', "bad_field"),
        (JSON_SUB, '{"a\\"b": 1}', "bad_field"),
        (LINE_SUB, 'm a"b=1', "bad_field"),
        (JSON_SUB, '{"t": 1, "time": "yesterday"}', "bad_timestamp"),
        (JSON_SUB, '{"t": 1, "time": true}', "bad_timestamp"),
        (JSON_SUB, '{"t": 1, "time": 12}', "bad_timestamp"),
        (JSON_SUB, '{"t": 1, "time": "2026-11-26T23:59:01"}', "bad_timestamp"),
        (JSON_SUB, '{"note": "only text", "room": "r"}', "no_fields"),
        (JSON_SUB, json.dumps({f"f{i}": i for i in range(300)}), "too_many_fields"),
        (VALUE_SUB, "nan", "non_finite"),
        (VALUE_SUB, "-inf", "non_finite"),
        (VALUE_SUB, "1e999", "non_finite"),
        (VALUE_SUB, "1_000", "not_number"),
        (VALUE_SUB, "twelve", "not_number"),
        (VALUE_SUB, '{"v": 1}', "not_number"),
        (LINE_SUB, "not line protocol", "bad_line"),
        (LINE_SUB, "m f=1\nm g=", "bad_line"),
        (LINE_SUB, "# only a comment", "no_fields"),
        (LINE_SUB, "m f=1 12", "bad_timestamp"),
    ],
)
def test_rejected_payloads(sub: SensorSubscription, payload: str | bytes, reason: str) -> None:
    assert reason in REASONS
    with pytest.raises(Rejected) as caught:
        _parse(sub, payload, max_bytes=4096)
    assert caught.value.reason == reason


def test_deep_nesting_that_breaks_the_json_parser_is_rejected() -> None:
    with pytest.raises(Rejected) as caught:
        _parse(JSON_SUB, VERY_DEEP, max_bytes=1_000_000)
    assert caught.value.reason in {"too_deep", "not_object"}


def test_topic_level_with_control_character_is_a_bad_tag() -> None:
    with pytest.raises(Rejected) as caught:
        _parse(VALUE_SUB, "1", topic="sensors/ha\x01ll/th1")
    assert caught.value.reason == "bad_tag"


def test_topic_outside_the_template_is_unknown() -> None:
    with pytest.raises(Rejected) as caught:
        _parse(VALUE_SUB, "1", topic="elsewhere/x")
    assert caught.value.reason == "unknown_topic"


def test_context_keeps_the_latest_value_per_series() -> None:
    context = SensorContext()
    context.update({"a/t": 1.0, "a/m": True})
    context.update({"a/t": 2.5})
    assert context.latest("a/t") == 2.5
    assert context.latest("missing") is None
    assert context.latest("a/m") is True  # a later update that does not name a series keeps it


@pytest.mark.parametrize(
    ("condition", "value", "fires"),
    [
        ({"equals": 1}, 1.0, True),
        ({"equals": 1}, True, True),
        ({"equals": 1}, False, False),
        ({"above": 30}, 30.0, False),
        ({"above": 30}, 30.5, True),
        ({"below": 5}, 4, True),
        ({"above": 1, "below": 3}, 2.0, True),
        ({"above": 1, "below": 3}, 3.0, False),
        ({"equals": 1}, "1", False),
    ],
)
def test_triggers(condition: dict[str, float], value: FieldValue, fires: bool) -> None:
    calls: list[tuple[str, float, float]] = []
    rule = TriggerConfig(
        when=TriggerCondition(series="s/motion", **condition), camera="cam", fps=15, for_s=30
    )
    triggers = Triggers([rule], lambda *args: calls.append(args))
    triggers.check({"s/motion": value, "other": 1.0})
    assert calls == ([("cam", 15.0, 30.0)] if fires else [])


def test_trigger_callback_errors_do_not_escape() -> None:
    rule = TriggerConfig(when=TriggerCondition(series="s", equals=1), camera="cam", fps=5)

    def broken(*_: object) -> None:
        raise RuntimeError("boom")

    Triggers([rule], broken).check({"s": 1.0})
    assert math.isfinite(rule.fps)


# --------------------------------------------------------------------------- line measurements (spoofing)

FORCED_SUB = SensorSubscription(topic="sensors/{site}/{sensor}", measurement="env", format="line")


def test_line_measurement_is_the_subscriptions_unless_allow_listed() -> None:
    parsed = _parse(FORCED_SUB, "cpu usage=1 1795737541000000000\nenv t=2 1795737541000000000")
    assert [text for _, text in parsed.lines] == [
        "env,sensor=th1,site=hall usage=1.0 1795737541000000000",
        "env,sensor=th1,site=hall t=2.0 1795737541000000000",
    ]
    allowed = FORCED_SUB.model_copy(update={"measurements": ["cpu"]})
    parsed = _parse(allowed, "cpu usage=1 1795737541000000000\nmem used=2 1795737541000000000")
    assert [parse_line(text).measurement for _, text in parsed.lines] == ["cpu", "env"]


@pytest.mark.parametrize(
    "line",
    [
        "detections,device=box,camera=dock,label=person,model=m count=1i,max_score=0.99 1795737541000000000",
        "inference,device=box,camera=dock,model=m e2e_ms=1.0 1795737541000000000",
        "objects n=1i",
        "tracks n=1i",
        "detections_max score=0.9",
        "env t=1\ndetections count=1i",  # one spoofed line rejects the whole message
    ],
)
@pytest.mark.parametrize(
    "sub", [FORCED_SUB, LINE_SUB, FORCED_SUB.model_copy(update={"measurements": ["detections"]})]
)
def test_line_naming_a_daemon_measurement_is_refused(line: str, sub: SensorSubscription) -> None:
    """The probe: format line wrote 20 spoofed detections/inference points (replays overwrite real ones)."""
    assert "reserved_measurement" in REASONS
    with pytest.raises(Rejected) as caught:
        _parse(sub, line)
    assert caught.value.reason == "reserved_measurement"


@pytest.mark.parametrize(
    "update",
    [{"measurement": "detections"}, {"measurement": "inference_x"}, {"measurements": ["ok", "tracks"]},
     {"measurements": [""]}],
)  # fmt: skip
def test_subscription_naming_a_daemon_measurement_is_a_config_error(update: dict[str, object]) -> None:
    sub = FORCED_SUB.model_copy(update=update)
    with pytest.raises(ConfigError, match="measurement"):
        SensorInput(MQTTConfig(sensors=[sub]), "box", None, CollectorRegistry(), SensorContext())  # type: ignore[arg-type]
