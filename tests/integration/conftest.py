"""Real servers for the integration tests: Mosquitto (plain, and TLS + password) and VictoriaMetrics.

Each runs from Debian's package on a free loopback port with a generated config and a data dir under the
session's tmp dir, and is stopped after the session. ``stop()``/``start()`` simulate outages; Mosquitto
keeps persistence on so persistent sessions and their queued messages survive a restart. A missing
binary fails the test with a message naming scripts/test-services.sh (nothing is skipped silently).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
from certs import make_certificates

MOSQUITTO = "/usr/sbin/mosquitto"
VICTORIA = "/usr/bin/victoria-metrics"
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def _binary(path: str, name: str) -> str:
    found = path if Path(path).exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: run scripts/test-services.sh (installs the Debian package)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, process: subprocess.Popen[bytes], log: Path, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port}: {log.read_text()[-2000:]}")


class Server:
    """A subprocess we can stop (SIGTERM, it saves its state) and start again on the same port."""

    def __init__(self, argv: list[str], port: int, log: Path) -> None:
        self.argv, self.port, self.log = argv, port, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)
        _wait_port(self.port, self.process, self.log)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class Broker:
    server: Server
    host: str = "127.0.0.1"
    tls_dir: Path | None = None
    username: str | None = None
    password: str | None = None

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server.start()


def _mosquitto(workdir: Path, extra: str) -> Server:
    binary = _binary(MOSQUITTO, "mosquitto")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"""
user root
listener {port} 127.0.0.1
persistence true
persistence_location {workdir}/
autosave_interval 1
max_queued_messages 100000
max_inflight_messages 100
log_dest stdout
log_type error
log_type warning
{extra}
"""
    )
    server = Server([binary, "-c", str(conf)], port, workdir / "mosquitto.log")
    server.start()
    return server


@pytest.fixture(scope="session")
def mosquitto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = _mosquitto(tmp_path_factory.mktemp("mosquitto"), "allow_anonymous true")
    yield server
    server.stop()


@pytest.fixture
def broker(mosquitto_server: Server) -> Broker:
    """The plain broker, running at the start of the test (an earlier outage test may have stopped it)."""
    mosquitto_server.start()
    return Broker(mosquitto_server)


# The ACL'd accounts: edgeinfer may write only below ACL_PREFIX/ACL_DEVICE and read only ACL_SENSORS.
ACL_PREFIX, ACL_DEVICE, ACL_SENSORS = "edgeacl", "box", "sensors-acl"
ACL_USER, ACL_PASSWORD = "acl-box", "acl-Pa55word-qrs"
ACL_RULES = f"""topic readwrite {ACL_PREFIX}/{ACL_DEVICE}/#
topic read {ACL_SENSORS}/#
"""


@pytest.fixture(scope="session")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """TLS with a client certificate required, and username/password required. ``sensor-box`` may use
    every topic; ``acl-box`` (ACL_USER) only ACL_RULES."""
    workdir = tmp_path_factory.mktemp("mosquitto-tls")
    certs = workdir / "certs"
    make_certificates(certs)
    passwd = workdir / "passwd"
    passwd.touch()
    username, password = "sensor-box", "s3cret-Pa55word-xyz"
    for user, secret in ((username, password), (ACL_USER, ACL_PASSWORD)):
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, secret], check=True, capture_output=True)
    acl = workdir / "acl"
    acl.write_text(f"user {username}\ntopic readwrite #\n\nuser {ACL_USER}\n{ACL_RULES}")
    server = _mosquitto(
        workdir,
        f"""allow_anonymous false
password_file {passwd}
acl_file {acl}
cafile {certs}/ca.crt
certfile {certs}/server.crt
keyfile {certs}/server.key
require_certificate true
tls_version tlsv1.2
""",
    )
    yield Broker(server, tls_dir=certs, username=username, password=password)
    server.stop()


@pytest.fixture(scope="session")
def cert_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """TLS client certificates as the credentials: the certificate's CN ("client") is the username, no
    password, anonymous refused; that user has ACL_RULES only."""
    workdir = tmp_path_factory.mktemp("mosquitto-cert")
    certs = workdir / "certs"
    make_certificates(certs)
    acl = workdir / "acl"
    acl.write_text(f"user client\n{ACL_RULES}")
    server = _mosquitto(
        workdir,
        f"""allow_anonymous false
acl_file {acl}
cafile {certs}/ca.crt
certfile {certs}/server.crt
keyfile {certs}/server.key
require_certificate true
use_identity_as_username true
tls_version tlsv1.2
""",
    )
    yield Broker(server, tls_dir=certs)
    server.stop()


class VictoriaMetrics:
    """VictoriaMetrics: accepts InfluxDB line protocol on /api/v2/write, read back via /api/v1/export."""

    def __init__(self, server: Server) -> None:
        self.server = server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def stop(self) -> None:
        self.server.stop()

    def start(self) -> None:
        self.server.start()

    def export(self, match: str) -> list[dict[str, object]]:
        """Every stored series matching the selector, as VictoriaMetrics' JSON lines (after a flush)."""
        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10).read()  # noqa: S310
        body = f"match[]={urllib.parse.quote(match)}".encode()
        request = urllib.request.Request(f"{self.url}/api/v1/export", data=body, method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return [json.loads(line) for line in response.read().decode().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def victoria_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    binary = _binary(VICTORIA, "victoria-metrics")
    workdir = tmp_path_factory.mktemp("victoria-metrics")
    port = free_port()
    server = Server(
        [
            binary,
            f"-storageDataPath={workdir}/data",
            f"-httpListenAddr=127.0.0.1:{port}",
            "-retentionPeriod=100y",
            "-dedup.minScrapeInterval=1ms",  # same series + timestamp: one sample, like InfluxDB's overwrite
            "-search.latencyOffset=0s",
            "-loggerLevel=ERROR",
        ],
        port,
        workdir / "victoria-metrics.log",
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def victoria(victoria_server: Server) -> VictoriaMetrics:
    victoria_server.start()
    return VictoriaMetrics(victoria_server)


@pytest.fixture(scope="session")
def schemas() -> dict[str, jsonschema.Draft202012Validator]:
    """A checked validator per payload schema (built once: jsonschema.validate re-checks the schema per call)."""
    validators = {}
    for name in ("detection-event", "object-event", "status", "stats"):
        schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        validators[name] = jsonschema.Draft202012Validator(schema)
    return validators


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``soak`` tests (30 minutes) run only when ``-m`` names them (scripts/soak.sh: ``-m soak``); otherwise
    they are deselected, and pytest's summary counts them as deselected. Unlike ``-m "not soak"`` in
    addopts this holds when a user passes their own ``-m`` (``-m "not slow"``, ``-m integration``)."""
    if "soak" in (config.getoption("markexpr") or ""):
        return
    keep, soak = [], []
    for item in items:
        (soak if item.get_closest_marker("soak") else keep).append(item)
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = keep
