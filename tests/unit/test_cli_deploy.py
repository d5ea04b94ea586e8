"""What can be checked here of the deploy story: the systemd unit (systemd-analyze verify where it is
installed; its options parsed either way), its command line and starting config, and what the READMEs
promise about Compose and the Jetson."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import yaml

from edgeinfer.cli import build_parser
from edgeinfer.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"
UNIT = SYSTEMD / "edgeinfer.service"


def _unit() -> dict[str, dict[str, list[str]]]:
    """Section -> key -> values (systemd keys may repeat; comments and blank lines dropped)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in UNIT.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{UNIT.name}: {line!r} before any section"
        key, sep, value = line.partition("=")
        assert sep, f"{UNIT.name}: not key=value: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_the_unit_parses_as_ini_too() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT, encoding="utf-8")
    assert parser.sections() == ["Unit", "Service", "Install"]
    assert parser["Install"]["WantedBy"] == "multi-user.target"


def test_the_unit_has_what_the_readme_says() -> None:
    service = _unit()["Service"]
    one = {k: v[-1] for k, v in service.items()}
    assert one["User"] == "edgeinfer" and one["Group"] == "edgeinfer"
    assert "video" in one["SupplementaryGroups"].split()
    assert one["StateDirectory"] == "edgeinfer"
    assert one["Restart"] == "on-failure"
    assert one["ProtectSystem"] == "strict"
    assert one["NoNewPrivileges"] == "yes"
    assert one["ProtectHome"] == "yes" and one["PrivateTmp"] == "yes"
    assert one["CapabilityBoundingSet"] == "" and one["AmbientCapabilities"] == ""
    assert one["DevicePolicy"] == "closed"
    assert "char-video4linux rw" in service["DeviceAllow"]
    assert one["StandardOutput"] == "journal" and one["StandardError"] == "journal"
    assert one["KillSignal"] == "SIGTERM"
    assert "DynamicUser" not in service  # a dedicated user, from edgeinfer.sysusers


def test_the_unit_command_line_is_an_edgeinfer_run_the_cli_accepts() -> None:
    argv = shlex.split(_unit()["Service"]["ExecStart"][-1])
    assert argv[0] == "/opt/edgeinfer/bin/edgeinfer" and argv[1] == "run"
    assert "--data-dir" in argv and argv[argv.index("--data-dir") + 1] == "${STATE_DIRECTORY}"
    substituted = [a.replace("${STATE_DIRECTORY}", "/var/lib/edgeinfer").replace(
        "${CONFIGURATION_DIRECTORY}", "/etc/edgeinfer") for a in argv[1:]]  # fmt: skip
    args = build_parser().parse_args(substituted)
    assert args.verb == "run" and args.config == "/etc/edgeinfer/edgeinfer.yaml"
    assert str(args.data_dir) == "/var/lib/edgeinfer"


def test_the_user_and_the_starting_config() -> None:
    lines = [
        line.split()
        for line in (SYSTEMD / "edgeinfer.sysusers").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0][:3] == ["u", "edgeinfer", "-"] and lines[0][-1] == "/var/lib/edgeinfer"
    assert ["m", "edgeinfer", "video"] in lines
    config = load_config(SYSTEMD / "edgeinfer.yaml")
    assert config.http.listen == "127.0.0.1:9108"
    assert [c.name for c in config.cameras] == ["demo"]  # the embedded default until cameras: is set


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    true = shutil.which("true")
    assert true is not None
    text = UNIT.read_text(encoding="utf-8").replace("/opt/edgeinfer/bin/edgeinfer", true)  # must exist
    copy = tmp_path / "edgeinfer.service"
    copy.write_text(text, encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    complaints = [
        line for line in (result.stdout + result.stderr).splitlines() if "edgeinfer.service" in line
    ]
    assert result.returncode == 0 and complaints == [], result.stdout + result.stderr


# --------------------------------------------------------------------------- READMEs


def test_compose_v2_is_required_and_said_so() -> None:
    compose = yaml.safe_load((ROOT / "containers" / "compose.yaml").read_text(encoding="utf-8"))
    readme = (ROOT / "containers" / "README.md").read_text(encoding="utf-8")
    if "name" in compose:  # a top-level name: is rejected by docker-compose 1.x
        assert "**Compose v2 is required**" in readme
        assert "docker-compose` 1.x" in readme
        assert "Compose v2" in (ROOT / "containers" / "compose.yaml").read_text(encoding="utf-8")
    commands = [line for line in readme.splitlines() if re.search(r"^\s*(sudo )?docker[- ]compose ", line)]
    assert commands and all("docker compose " in line for line in commands)  # v2 syntax throughout


def test_readme_says_what_is_built_and_tested_and_points_only_inside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "shared/DESIGN.md" not in readme
    install = readme[readme.index("## Install") : readme.index("## Command line")]
    jetson = install[install.index("**Jetson") :]
    assert "Python 3.10" in jetson and "3.11" in jetson and "not tested" in jetson
    deploy = readme[readme.index("## Deploy") : readme.index("## Development")]
    # what is built and run (tests/containers) and what is only linted (the Jetson image) is said
    assert "scripts/build-images.sh" in deploy and "tests/containers" in deploy
    assert "The Jetson image is linted only" in deploy
    assert "deploy/systemd/" in deploy and "deploy/k8s/" in deploy
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if not target.startswith(("http://", "https://")):
            assert (ROOT / target).exists(), f"README links to missing {target}"


def test_readme_documents_the_options_that_were_missing() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for option in ("--status-interval", "--listen", "--follow", "--limit 0", "-r", "--status", "--stats"):
        assert option in readme, option
