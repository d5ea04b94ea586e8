"""containers/compose.yaml brought up for real with podman-compose (with compose.test.yaml's stand-ins).

What it shows: the stack's edgeinfer runs with the production settings (checked on the running container,
not in the YAML); every service's own healthcheck passes; detection events arrive over MQTT at a client on
the host, detection and sensor points arrive in the TSDB through the InfluxDB v2 write API; Prometheus
scrapes edgeinfer's /metrics; the Grafana dashboard's queries name only metrics the daemon exports, and
Prometheus evaluates each of them.

podman 4.3 (Debian bookworm) cannot wait for `condition: service_healthy` (podman-compose says so in a
warning and starts the services in dependency order only), and its healthchecks do not run on a timer
without systemd; so the test runs each service's healthcheck itself (`podman healthcheck run`).
"""

from __future__ import annotations

import json
import platform
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from tests.containers.conftest import ROOT, podman, podman_env

# the first test's setup builds both images (about 8 minutes from nothing on a 2-core machine)
pytestmark = [pytest.mark.containers, pytest.mark.slow, pytest.mark.timeout(1800)]

# the dev extra's podman-compose, next to this interpreter (a venv's bin/ need not be on PATH)
PODMAN_COMPOSE = str(Path(sys.executable).with_name("podman-compose"))
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}[platform.machine()]
STANDINS = ["mosquitto", "victoria-metrics", "prometheus"]
SERVICES = ["mosquitto", "influxdb", "edgeinfer", "prometheus"]
SECRETS = ["mqtt_password", "influx_token", "influx_admin_password", "grafana_admin_password"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, timeout: float = 10) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback test servers)
        return bytes(response.read())


def wait_for(predicate, timeout: float, what: str, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (OSError, ValueError) as exc:  # not up yet
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


class Stack:
    def __init__(self, workdir: Path, project: str, ports: dict[str, int]) -> None:
        self.workdir = workdir
        self.project = project
        self.ports = ports
        self.env = podman_env() | {f"EDGEINFER_{k}_PORT": str(v) for k, v in ports.items()}

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        command = [
            PODMAN_COMPOSE,
            "-p", self.project,
            "-f", str(self.workdir / "compose.yaml"), "-f", str(self.workdir / "compose.test.yaml"),
            "--profile", "monitoring", *args,
        ]  # fmt: skip
        return subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=timeout)

    def container(self, service: str) -> str:
        out = podman(
            "ps", "-a", "--filter", f"label=io.podman.compose.project={self.project}",
            "--filter", f"label=io.podman.compose.service={service}", "--format", "{{.Names}}",
        ).stdout.split()  # fmt: skip
        assert len(out) == 1, f"service {service}: containers {out}"
        return out[0]

    def logs(self) -> str:
        parts = []
        for service in SERVICES:
            try:
                name = self.container(service)
            except AssertionError as exc:
                parts.append(f"--- {service}: {exc}")
                continue
            log = podman("logs", "--tail", "40", name, check=False)
            parts.append(f"--- {service} ({name})\n{log.stdout[-2500:]}{log.stderr[-2500:]}")
        return "\n".join(parts)

    def down(self) -> None:
        self.compose("down", "-v", "--timeout", "20", timeout=300)
        label = f"label=io.podman.compose.project={self.project}"
        for name in podman("ps", "-aq", "--filter", label, check=False).stdout.split():
            podman("rm", "--force", name, check=False)
        for name in podman("volume", "ls", "-q", "--filter", label, check=False).stdout.split():
            podman("volume", "rm", "--force", name, check=False)
        podman("network", "rm", "--force", f"{self.project}_default", check=False)


@pytest.fixture(scope="module")
def stack(built_images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # a copy of containers/, so the secrets the test makes never land next to a user's real ones
    workdir = tmp_path_factory.mktemp("stack") / "containers"
    shutil.copytree(ROOT / "containers", workdir, ignore=shutil.ignore_patterns("secrets"))
    (workdir / "secrets").mkdir(mode=0o700)
    for name in SECRETS:
        path = workdir / "secrets" / name
        path.write_text(secrets.token_hex(24) + "\n")
        path.chmod(0o644)  # the services read them as their own users (compose.yaml, secrets/README.md)
    for standin in STANDINS:
        podman(
            "build", "--format", "docker", "--network", "host",
            "--build-arg", f"BASE_IMAGE=localhost/edgeinfer-base:py311-bookworm-{HOST_ARCH}",
            "-f", str(workdir / "test" / f"{standin}.Containerfile"),
            "-t", f"localhost/edgeinfer-standin/{standin}:test", str(workdir / "test"),
            timeout=600,
        )  # fmt: skip
    ports = {name: free_port() for name in ("MQTT", "HTTP", "INFLUX", "PROMETHEUS", "GRAFANA")}
    s = Stack(workdir, f"edgeinfer-test-{secrets.token_hex(4)}", ports)
    try:
        up = s.compose("up", "-d", "--no-build", *SERVICES)
        assert up.returncode == 0, f"podman-compose up failed:\n{up.stdout[-4000:]}\n{up.stderr[-4000:]}"
        yield s
    finally:
        s.down()


@pytest.fixture(scope="module")
def healthy(stack: Stack) -> Stack:
    for service in SERVICES:
        name = stack.container(service)

        def passes(name: str = name) -> bool:
            return podman("healthcheck", "run", name, check=False, timeout=60).returncode == 0

        try:
            wait_for(passes, 180, f"{service}'s compose healthcheck")
        except pytest.fail.Exception:
            print(stack.logs())
            raise
    return stack


def test_edgeinfer_runs_with_the_production_settings(healthy: Stack):
    info = json.loads(podman("inspect", healthy.container("edgeinfer")).stdout)[0]
    host, config = info["HostConfig"], info["Config"]
    assert host["ReadonlyRootfs"] is True
    assert {c.upper().removeprefix("CAP_") for c in host["CapDrop"]} >= {"CHOWN", "NET_RAW", "SETUID"}
    assert not host.get("CapAdd")
    assert info["EffectiveCaps"] in (None, [])
    assert any("no-new-privileges" in opt for opt in host["SecurityOpt"] or []), host["SecurityOpt"]
    assert host["Memory"] == 768 * 2**20
    assert host["NanoCpus"] == 2 * 10**9 or host.get("CpuQuota") == 2 * host.get("CpuPeriod", 100000)
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert config["User"] == "10001:10001"
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    assert {"/run/secrets/mqtt_password", "/run/secrets/influx_token"} <= set(mounts)
    assert "/run/secrets/influx_admin_password" not in mounts  # only what the service is granted
    assert mounts["/var/lib/edgeinfer"]["Type"] == "volume"
    assert config["Healthcheck"]["Test"][0] == "CMD"
    write = podman("exec", healthy.container("edgeinfer"), "sh", "-c", "touch /etc/x", check=False)
    assert write.returncode != 0 and "Read-only file system" in write.stderr


def test_detections_arrive_over_mqtt_and_in_the_tsdb_and_sensor_readings_are_stored(healthy: Stack):
    password = (healthy.workdir / "secrets" / "mqtt_password").read_text().strip()
    received: list[tuple[str, dict]] = []
    arrived = threading.Event()

    def on_message(_client, _userdata, message):
        if message.topic.startswith("edgeinfer/"):
            try:
                doc = json.loads(message.payload)
            except ValueError:
                return
            if not isinstance(doc, dict):  # the retained counts are bare numbers
                return
            received.append((message.topic, doc))
            if "detections" in doc:
                arrived.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{healthy.project}-sub")
    client.username_pw_set("edgeinfer", password)
    client.on_message = on_message
    client.connect("127.0.0.1", healthy.ports["MQTT"])
    client.subscribe("edgeinfer/#", qos=1)
    client.loop_start()
    try:
        assert arrived.wait(90), f"no detection event over MQTT in 90 s; got {[t for t, _ in received][:5]}"
        event = next(doc for _, doc in received if "detections" in doc)
        assert event["device"] == "edgeinfer" and event["camera"] == "demo" and event["detections"]
        client.publish("sensors/dock/temp", "21.5", qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()

    influx = f"http://127.0.0.1:{healthy.ports['INFLUX']}"

    def series(match: str) -> list[dict]:
        get(f"{influx}/internal/force_flush")
        body = urllib.parse.urlencode({"match[]": match}).encode()
        request = urllib.request.Request(f"{influx}/api/v1/export", data=body, method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return [json.loads(line) for line in response.read().decode().splitlines() if line.strip()]

    detections = wait_for(lambda: series('{__name__=~"detections_.+"}'), 90, "detection points in the TSDB")
    assert {s["metric"].get("camera") for s in detections} == {"demo"}
    assert {s["metric"].get("device") for s in detections} == {"edgeinfer"}
    sensor = wait_for(lambda: series('{__name__="sensors_value"}'), 90, "the sensor reading in the TSDB")
    assert sensor[0]["metric"]["site"] == "dock" and sensor[0]["metric"]["sensor"] == "temp"
    assert sensor[0]["values"] == [21.5]


def prometheus_query(stack: Stack, expr: str) -> dict:
    url = f"http://127.0.0.1:{stack.ports['PROMETHEUS']}/api/v1/query?" + urllib.parse.urlencode(
        {"query": expr}
    )
    data = json.loads(get(url))
    assert data["status"] == "success", data
    return data["data"]


def test_prometheus_scrapes_edgeinfer(healthy: Stack):
    def edgeinfer_target_up():
        targets = json.loads(get(f"http://127.0.0.1:{healthy.ports['PROMETHEUS']}/api/v1/targets"))
        active = [t for t in targets["data"]["activeTargets"] if t["labels"]["job"] == "edgeinfer"]
        return active and active[0]["health"] == "up" and active

    (target,) = wait_for(edgeinfer_target_up, 90, "Prometheus' edgeinfer target to be up")
    assert target["scrapeUrl"] == "http://edgeinfer:9108/metrics"
    result = wait_for(
        lambda: prometheus_query(healthy, 'edgeinfer_frames_processed_total{camera="demo"} > 0')["result"],
        90,
        "edgeinfer_frames_processed_total in Prometheus",
    )
    assert float(result[0]["value"][1]) > 0


METRIC = re.compile(r"\b(edgeinfer_[a-z0-9_]+)")


def test_the_dashboard_queries_only_exported_metrics_and_each_query_evaluates(healthy: Stack):
    dashboard = json.loads((ROOT / "containers" / "grafana" / "dashboards" / "edgeinfer.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    exposition = get(f"http://127.0.0.1:{healthy.ports['HTTP']}/metrics").decode()
    exported = set(re.findall(r"^([a-z_][a-z0-9_]*)(?:\{| )", exposition, flags=re.MULTILINE))
    for name in re.findall(r"^# TYPE (\S+) (\w+)", exposition, flags=re.MULTILINE):
        base, kind = name
        exported |= {base, f"{base}_total"} if kind == "counter" else {base}
        if kind == "histogram":
            exported |= {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    for expr in exprs:
        for name in METRIC.findall(expr):
            assert name in exported, (
                f"dashboard query {expr!r} names {name}, which the daemon does not export"
            )
    # Prometheus evaluates every query; the core panels have data once a few scrapes are in
    for expr in exprs:
        prometheus_query(healthy, expr)
    for core in (
        "edgeinfer_events_total",
        "edgeinfer_frames_processed_total",
        "edgeinfer_stage_latency_seconds",
    ):
        (expr,) = [e for e in exprs if core in e]
        wait_for(lambda expr=expr: prometheus_query(healthy, expr)["result"], 120, f"data for {expr}")
