"""format_point against a real line protocol parser: VictoriaMetrics' (InfluxDB v2 write API, export API).

VictoriaMetrics names a series ``{measurement}_{field}`` and keeps tags as labels, so a point reads back
as one sample per field. What is compared: the series name, the labels and the value of every sample,
against what :func:`edgeinfer.lineprotocol.carried` says the names become. Tag keys starting with ``__``
are VictoriaMetrics' own labels and are not generated; nor is '"' in a field key (valid line protocol that
VictoriaMetrics' parser cannot read; sensor input refuses such keys and the daemon's own have none).
"""

from __future__ import annotations

import math
import time
import uuid

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from edgeinfer.config import InfluxDBConfig
from edgeinfer.lineprotocol import FieldValue, carried, format_point
from edgeinfer.sinks.influx import InfluxWriter

pytestmark = pytest.mark.integration

_SPECIALS = list('\n\r\t\\ ,="#\x00\x0b\x7f\x85\u2028\u3000\ud800\udfff')
_name = st.text(alphabet=st.one_of(st.sampled_from(_SPECIALS), st.characters()), min_size=1, max_size=10)
_tag_key = _name.filter(lambda k: not carried(k).startswith("__") and carried(k) != "run")
_field_key = _name.filter(lambda k: '"' not in k)
# VictoriaMetrics keeps float64 values (integers beyond 2**53 would not read back exactly) and stores very
# small magnitudes as 0: those are its number format, not line protocol.
_number = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(min_value=-1e15, max_value=1e15).filter(lambda x: x == 0 or abs(x) >= 1e-30),
)
_point = st.tuples(
    _name,
    st.dictionaries(_tag_key, _name, max_size=3),
    st.dictionaries(_field_key, _number, min_size=1, max_size=3),
)

Sample = tuple[str, frozenset[tuple[str, str]], int]  # (series name, labels, timestamp ms)


def _write(victoria, lines: list[str]) -> None:  # type: ignore[no-untyped-def]
    writer = InfluxWriter(InfluxDBConfig(url=victoria.url, org="edge", bucket="lp", timeout_s=10))
    try:
        writer.write(lines)
    finally:
        writer.close()


def _read(victoria, selector: str, until=None, within: float = 15.0) -> dict[Sample, float]:  # type: ignore[no-untyped-def]
    """The samples matching ``selector``; with ``until``, polled until it holds (new series show up in
    VictoriaMetrics' index about a second after they were written)."""
    deadline = time.monotonic() + within
    while True:
        got = _export(victoria, selector)
        if until is None or until(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def _export(victoria, selector: str) -> dict[Sample, float]:  # type: ignore[no-untyped-def]
    out = {}
    for series in victoria.export(selector):
        labels = dict(series["metric"])
        name = labels.pop("__name__")
        for ts, value in zip(series["timestamps"], series["values"], strict=True):
            out[(name, frozenset(labels.items()), ts)] = value
    return out


def _expected(measurement: str, tags: dict[str, str], fields: dict[str, FieldValue], labels: dict[str, str],
              ts_ms: int) -> dict[Sample, float]:  # fmt: skip
    want_tags = {carried(k): carried(tags[k]) for k in sorted(tags) if tags[k] != ""}
    want_labels = frozenset({**want_tags, **labels}.items())
    name = carried(measurement, "measurement")
    want_fields = {carried(k, "field"): float(v) for k, v in fields.items()}
    return {(f"{name}_{k}", want_labels, ts_ms): v for k, v in want_fields.items()}


def test_generated_points_read_back_from_victoriametrics_as_written(victoria) -> None:  # type: ignore[no-untyped-def]
    run = uuid.uuid4().hex
    base_ms = time.time_ns() // 10**6 - 3_600_000
    generated: list[tuple[str, dict[str, str], dict[str, FieldValue]]] = []

    @settings(max_examples=50, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(_point)
    def collect(point: tuple[str, dict[str, str], dict[str, FieldValue]]) -> None:
        generated.append(point)

    collect()
    lines, expected = [], {}
    for i, (measurement, tags, fields) in enumerate(generated):
        ts_ms = base_ms + i  # one ms apart: every point is its own sample
        lines.append(format_point(measurement, {**tags, "run": run}, fields, ts_ms * 10**6))
        expected.update(_expected(measurement, tags, fields, {"run": run}, ts_ms))
    _write(victoria, lines)  # one batch, as the forwarder sends it
    got = _read(victoria, f'{{run="{run}"}}', until=lambda got: set(got) == set(expected))
    assert set(got) == set(expected), (set(got) ^ set(expected), lines)
    for key, value in expected.items():
        assert math.isclose(got[key], value, rel_tol=1e-12, abs_tol=0), (key, got[key], value)


def test_label_with_line_breaks_writes_no_foreign_series(victoria) -> None:  # type: ignore[no-untyped-def]
    """The probe: a label (labels file, model metadata) or device with "\\n" wrote 3 foreign series."""
    run = uuid.uuid4().hex[:10]
    ts_ns = (time.time_ns() // 10**6 - 60_000) * 10**6
    forged = "".join(f"\nforged_{run}_{c},camera=dock count=99i {ts_ns}" for c in "abc")
    tags = {"device": f"box\nforged_{run}_d v=1i {ts_ns}", "camera": "dock", "label": "person" + forged,
            "model": "m", "run": run}  # fmt: skip
    _write(victoria, [format_point("detections", tags, {"count": 2, "max_score": 0.5}, ts_ns)])
    labels = frozenset({k: carried(v) for k, v in tags.items()}.items())
    expected = {("detections_count", labels, ts_ns // 10**6): 2.0,
                ("detections_max_score", labels, ts_ns // 10**6): 0.5}  # fmt: skip
    assert _read(victoria, f'{{run="{run}"}}', until=lambda got: got == expected) == expected
    # Written in the same request: a foreign series (before the fix, one per injected line) shows up as soon.
    assert _read(victoria, f'{{__name__=~"forged_{run}_.*"}}', until=bool, within=3.0) == {}
