"""Soak: the real daemon for a while under steady load, with the broker and the TSDB restarted during it.

4 synthetic cameras (an event per frame), MQTT (events, status, stats), InfluxDB line protocol into the
real VictoriaMetrics, sensor readings published to the real Mosquitto and subscribed by the daemon. The
broker and the TSDB are each stopped for 6 s twice: once during warm-up, once between the two windows
compared. The daemon's RSS, open fds (and their kinds) and threads are sampled every 2 s from /proc.

Checked at the end: after warm-up (the first 40 s or third) RSS grows < 5% (median of the last tenth of
the run against the median of the tenth after warm-up), open fds (the last tenth's median against the
most in the tenth after warm-up) and threads (the most in each) do not grow; every event in the
store was received by the subscriber, every point in the store is in the TSDB, every sensor reading the
broker acknowledged is in the store; SIGTERM exits 0 with the store's backlogs at 0.

Two versions of the same test: ``2min`` runs in the default suite; ``soak`` (30 minutes, or
EDGEINFER_SOAK_S seconds) is marked ``soak`` and runs only when asked for: ``scripts/soak.sh`` or
``pytest -m soak``. Traffic stays on 127.0.0.1; every loop is bounded by the duration.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import paho.mqtt.client as paho
import psutil
import pytest
from daemon_helpers import start_daemon, store_point_keys, tsdb_keys
from mqtt_helpers import Subscriber, publish_all
from paho.mqtt.enums import CallbackAPIVersion

from edgeinfer.lineprotocol import parse_line
from edgeinfer.sinks.influx import SINK as INFLUX
from edgeinfer.sinks.mqtt_publisher import SINK as MQTT
from edgeinfer.store.sqlite import Store

SOAK_S = float(os.environ.get("EDGEINFER_SOAK_S", "1800"))
SAMPLE_S = 2.0
OUTAGE_S = 6.0


class SensorPublisher:
    """Another device on the broker: a reading (its number as the value) every 0.1 s, QoS 1; paho
    queues what it cannot send while the broker is down and sends it after reconnecting. A reading
    counts as published once the broker acknowledged it (PUBACK, ``on_publish``)."""

    def __init__(self, port: int, topic: str) -> None:
        self.topic = topic
        self.mids: list[int] = []  # reading n was sent as message id mids[n]
        self.acked: set[int] = set()
        self._lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:6]}")
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)
        self.client.max_queued_messages_set(0)  # unbounded: nothing is dropped while the broker is away
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _on_publish(
        self, _client: paho.Client, _userdata: object, mid: int, _rc: object, _props: object
    ) -> None:
        with self._lock:
            self.acked.add(mid)

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(0.1):
            info = self.client.publish(self.topic, str(n), qos=1)  # queued even while disconnected
            self.mids.append(info.mid)
            n += 1

    def close(self, timeout: float = 30) -> set[int]:
        """Stop publishing, wait for the broker's acks; returns the readings the broker acknowledged."""
        self._stop.set()
        self._thread.join(5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(mid in self.acked for mid in self.mids):
                    break
            time.sleep(0.1)
        self.client.disconnect()
        self.client.loop_stop()
        with self._lock:
            return {n for n, mid in enumerate(self.mids) if mid in self.acked}


def _wait_for_sensor_session(port: int, topic: str, data_dir: Path, daemon, log: Path) -> None:  # type: ignore[no-untyped-def]
    """Publish a probe reading (-1) until one is in the store: from then on the daemon's persistent
    sensor session exists, and the broker queues every reading for it (before it, MQTT delivers nothing)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert daemon.poll() is None, log.read_text()[-3000:]
        publish_all(port, [(topic, b"-1")])
        if (data_dir / "edgeinfer.db").exists():
            store = Store(data_dir / "edgeinfer.db", readonly=True)
            try:
                points = store.pending("soak-reader", "points", 10_000_000, after_id=0)
            finally:
                store.close()
            if any(p.body.startswith("environment") for p in points):
                return
        time.sleep(0.5)
    raise AssertionError(f"the daemon never stored a sensor reading: {log.read_text()[-3000:]}")


def _fd_kinds(pid: int) -> Counter:
    """What the process's descriptors are ("socket", "pipe", "anon_inode:[eventfd]", a file's name): a
    failing fd comparison says which kind grew."""
    kinds: Counter = Counter()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = str(fd.readlink())
        except OSError:  # closed between the listing and the read
            continue
        kinds[target.split(":[")[0] if target.startswith(("socket:", "pipe:")) else Path(target).name] += 1
    return kinds


def _fd_kinds_changed(base: list[dict], last: list[dict]) -> dict[str, tuple[float, float]]:
    """Per kind of descriptor, the medians of the two windows, where they differ."""
    kinds = {k for s in base + last for k in s["fd_kinds"]}
    medians = {
        k: (
            statistics.median(s["fd_kinds"][k] for s in base),
            statistics.median(s["fd_kinds"][k] for s in last),
        )
        for k in sorted(kinds)
    }
    return {k: m for k, m in medians.items() if m[0] != m[1]}


def _sample(process: psutil.Process, at: float) -> dict[str, object]:
    with process.oneshot():
        return {
            "t": at,
            "rss": process.memory_info().rss,
            "fds": process.num_fds(),
            "fd_kinds": _fd_kinds(process.pid),
            "threads": process.num_threads(),
        }


@pytest.mark.parametrize(
    "duration_s",
    [
        pytest.param(
            120.0, id="2min", marks=[pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(400)]
        ),
        pytest.param(
            SOAK_S,
            id="soak",
            marks=[
                pytest.mark.soak,
                pytest.mark.integration,
                pytest.mark.slow,
                pytest.mark.timeout(SOAK_S + 600),
            ],
        ),
    ],
)
def test_soak(duration_s: float, broker, victoria, schemas, tmp_path: Path, record_property) -> None:  # type: ignore[no-untyped-def]
    device = f"soak{uuid.uuid4().hex[:6]}"
    data_dir = tmp_path / "data"
    config = tmp_path / "edgeinfer.yaml"
    cameras = "\n".join(
        f"  - {{name: cam{i}, source: {{type: synthetic, seed: {i}, prerender: 32}}, fps: 5, events: every_frame}}"
        for i in range(4)
    )
    config.write_text(
        f"""
device: {device}
data_dir: {data_dir}
cameras:
{cameras}
detector: {{instances: 1, threads: 1}}
http: {{listen: "127.0.0.1:0"}}
mqtt:
  host: 127.0.0.1
  port: {broker.port}
  topic_prefix: {device}
  stats_interval_s: 5
  sensors:
    - {{topic: "sensors-{device}/{{site}}/{{sensor}}", measurement: environment, format: value}}
influxdb: {{url: "{victoria.url}", org: edge, bucket: edge, token: "t0ken", batch_size: 500, flush_interval_s: 0.5,
            timeout_s: 2}}
"""
    )
    subscriber = Subscriber(
        broker.port,
        [f"{device}/{device}/+/detections", f"{device}/{device}/status"],
        client_id=f"sub-{device}",
    )
    log = tmp_path / "daemon.log"
    daemon = start_daemon(config, log, "--status-interval", "30")
    topic = f"sensors-{device}/{device}/temp"  # tags: site={device}
    _wait_for_sensor_session(broker.port, topic, data_dir, daemon, log)
    sensors = SensorPublisher(broker.port, topic)
    process = psutil.Process(daemon.pid)
    samples: list[dict] = []
    outages: dict[str, float] = {}
    try:
        started = time.monotonic()
        # One outage of each during warm-up (their code paths allocate once, on first use), then one of
        # each between the two windows RSS is compared over: repeated outages must not grow memory.
        schedule = [(0.12, "broker"), (0.24, "tsdb"), (0.55, "broker"), (0.72, "tsdb")]
        servers = {"broker": broker, "tsdb": victoria}
        while (elapsed := time.monotonic() - started) < duration_s:
            assert daemon.poll() is None, (
                f"the daemon exited ({daemon.returncode}): {log.read_text()[-3000:]}"
            )
            samples.append(_sample(process, elapsed))
            if schedule and elapsed >= schedule[0][0] * duration_s:
                _, which = schedule.pop(0)
                servers[which].stop()
                time.sleep(OUTAGE_S)
                servers[which].start()
                outages[f"{which}@{elapsed:.0f}s"] = OUTAGE_S
            time.sleep(SAMPLE_S)
        published = sensors.close()
        time.sleep(2.0)  # the last readings reach the daemon and its store
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0, log.read_text()[-3000:]
        assert subscriber.wait_for(lambda ms: bool(ms) and ms[-1][1] == b"offline", 15)
    finally:
        if daemon.poll() is None:
            os.kill(daemon.pid, signal.SIGKILL)
            daemon.wait(10)
        subscriber.close()
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]

    # ---- resources: after warm-up, RSS < +5 %, no fd or thread growth
    warm = max(40.0, 0.33 * duration_s)  # after the first two outages
    tenth = max(10.0, 0.1 * duration_s)
    base = [s for s in samples if warm <= s["t"] < warm + tenth]
    last = [s for s in samples if s["t"] >= samples[-1]["t"] - tenth]
    assert len(base) >= 3 and len(last) >= 3, samples
    rss_growth = statistics.median(s["rss"] for s in last) / statistics.median(s["rss"] for s in base) - 1
    # The last tenth's median against the most seen after warm-up. A descriptor open for a moment when a
    # sample is taken (a snapshot JPEG being written) is not in the median; one missing for a while in the
    # base window (the TSDB connection still in its backoff after the first outage: CI's run read 22 there
    # and 23 at the end) is not in the maximum. A leak adds descriptors with every outage and shows in both.
    fds = (max(s["fds"] for s in base), statistics.median(s["fds"] for s in last))
    threads = (max(s["threads"] for s in base), max(s["threads"] for s in last))

    # ---- nothing lost: store -> subscriber, store -> TSDB, broker -> store (sensors)
    store = Store(data_dir / "edgeinfer.db", readonly=True)
    try:
        stored_events = {(e.camera, e.doc["seq"]) for e in store.events()}
        points = store.pending("soak-reader", "points", 10_000_000, after_id=0)
        sensor_values = {
            parse_line(p.body).fields["value"] for p in points if p.body.startswith("environment")
        }
        expected = set(store_point_keys(store))
    finally:
        store.close()
    backlog = Store(data_dir / "edgeinfer.db")
    try:
        backlogs = (backlog.backlog(MQTT, "events"), backlog.backlog(INFLUX, "points"))
    finally:
        backlog.close()
    received = Counter()
    for topic, payload, _retain in subscriber.snapshot():
        if topic.endswith("/detections"):
            event = json.loads(payload)
            received[(event["camera"], event["seq"])] += 1
    lost_events = stored_events - set(received)
    duplicates = sum(received.values()) - len(received)
    selectors = (f'{{device="{device}"}}', f'{{site="{device}"}}')  # the daemon's points, the sensor's
    deadline = time.monotonic() + 20  # VictoriaMetrics makes fresh rows searchable asynchronously
    in_tsdb = sum((tsdb_keys(victoria, s) for s in selectors), Counter())
    while expected - set(in_tsdb) and time.monotonic() < deadline:
        time.sleep(1.0)
        in_tsdb = sum((tsdb_keys(victoria, s) for s in selectors), Counter())
    sensor_in_tsdb = {k for k in in_tsdb if k[0] == "environment_value"}
    lost_points = expected - set(in_tsdb)
    lost_readings = {float(n) for n in published} - sensor_values
    summary = {
        "duration_s": duration_s,
        "rss_mb_base": round(statistics.median(s["rss"] for s in base) / 2**20, 1),
        "rss_growth_pct": round(100 * rss_growth, 2),
        "fds_base_last": fds,
        "fd_kinds_changed": _fd_kinds_changed(base, last),
        "threads_base_last": threads,
        "events": len(stored_events),
        "event_duplicates": duplicates,
        "lost_events": len(lost_events),
        "points": len(expected),
        "lost_points": len(lost_points),
        "sensor_readings": len(published),
        "sensor_in_tsdb": len(sensor_in_tsdb),
        "lost_readings": len(lost_readings),
        "lost_readings_first": sorted(lost_readings)[:20],
        "backlogs_after_stop": backlogs,
        "outages_s": outages,
    }
    print(json.dumps(summary))
    for key, value in summary.items():
        record_property(key, value)
    (tmp_path / "soak-summary.json").write_text(json.dumps({"summary": summary, "samples": samples}))
    assert backlogs == (0, 0)
    assert not lost_events, sorted(lost_events)[:10]
    assert not lost_points, sorted(lost_points, key=lambda k: k[2])[:5]
    assert published and not lost_readings, sorted(lost_readings)[:10]
    assert rss_growth < 0.05, summary
    assert fds[1] <= fds[0] and threads[1] <= threads[0], summary
