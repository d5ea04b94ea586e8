"""The status line the daemon logs every status interval, from a typed Stats snapshot and the sinks' states."""

from __future__ import annotations

from edgeinfer.app.metrics import STAGES, Metrics
from edgeinfer.app.stats import SinkState, Stats, Window, status_line
from edgeinfer.pipeline.types import PipelineStatus, StageTimes


def _status(**kw) -> PipelineStatus:  # type: ignore[no-untyped-def]
    base = {
        "mono": 1000.0,
        "uptime_s": 60.0,
        "frames": {"dock": 50, "yard": 40},
        "drops": {"dock": 2, "yard": 1},
        "cameras_up": {"dock": True, "yard": True},
    }
    return PipelineStatus(**{**base, **kw})


def _running(**kw) -> Stats:  # type: ignore[no-untyped-def]
    metrics = Metrics()
    metrics.bind(["dock", "yard"])
    for i in range(11):  # dock: 10 fps over the last second; yard: 5 fps
        metrics.frame_done("dock", StageTimes(1.0, 2.0, 3.0, 4.0, 14.0), False, 999.0 + i * 0.1)
    for i in range(6):
        metrics.frame_done("yard", StageTimes(1.0, 2.0, 3.0, 4.0, 14.0), False, 999.0 + i * 0.2)
    for size in (1, 2, 2, 3):
        metrics.batch_done(size)
    return metrics.stats(_status(**kw))


def test_running_with_both_sinks():
    sinks = [SinkState("mqtt", True, 0), SinkState("influxdb", False, 1200)]
    assert status_line(_running(), sinks, events=812) == (
        "fps dock=10.0 yard=5.0 | batch 2.00 | e2e p50 14.0 ms p99 14.0 ms | dropped 3 | events 812"
        " | mqtt connected backlog 0 | influxdb disconnected backlog 1200"
    )


def test_a_dead_camera_says_down_not_its_last_rate():
    line = status_line(_running(cameras_up={"dock": True, "yard": False}), events=5)
    assert line.startswith("fps dock=10.0 yard=down | ")


def test_a_camera_not_started_yet_is_down():
    line = status_line(_running(cameras_up={"dock": True}))
    assert line.startswith("fps dock=10.0 yard=down | ")


def test_before_the_first_batch_it_is_waiting_not_zero_latency():
    empty = {stage: Window() for stage in STAGES}
    stats = Stats.collect(_status(frames={"dock": 0}, drops={"dock": 0}), empty, Window(), {})
    line = status_line(stats, [SinkState("mqtt", False, 0)], events=0)
    assert (
        line == "fps dock=0.0 | waiting for first frame | dropped 0 | events 0 | mqtt disconnected backlog 0"
    )
    assert "p50" not in line and "batch" not in line


def test_a_sink_not_tried_yet_and_an_uncounted_backlog():
    line = status_line(_running(), [SinkState("influxdb", None, None)])
    assert line.endswith(" | influxdb not tried yet backlog ?")


def test_without_sinks_the_line_ends_with_the_events():
    assert status_line(_running(), (), events=7).endswith(" | dropped 3 | events 7")
