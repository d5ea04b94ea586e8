"""scripts/setup.sh installs only when needed, so scripts/run.sh starts offline on a complete .venv.

Runs copies of the real scripts in a temporary checkout with a fake ``python3``: its ``-m venv`` makes a
fake .venv whose python logs every ``pip`` call (and fails it when FAKE_OFFLINE=1, as pip does without a
network). Nothing touches a real virtual environment or the network.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

FAKE_PYTHON = r"""#!/usr/bin/env bash
# A stand-in for python3 and for .venv/bin/python: venv, pip (logged), the import probe.
self=$(readlink -f "$0")
if [ "${1:-}" = -m ] && [ "${2:-}" = venv ]; then
  dir=${@: -1}
  mkdir -p "$dir/bin"
  cp "$self" "$dir/bin/python"
  printf '#!/usr/bin/env bash\necho "edgeinfer $*"\n' > "$dir/bin/edgeinfer"
  chmod +x "$dir/bin/python" "$dir/bin/edgeinfer"
  echo "venv $dir" >> "$FAKE_LOG"
  exit 0
fi
if [ "${1:-}" = -m ] && [ "${2:-}" = pip ]; then
  shift 2
  echo "pip $*" >> "$FAKE_LOG"
  [ "${FAKE_OFFLINE:-0}" = 1 ] && { echo "ERROR: could not reach the index" >&2; exit 1; }
  exit 0
fi
if [ "${1:-}" = -I ]; then
  echo "${FAKE_EDGEINFER_DIR:-$(pwd -P)/edgeinfer}"
  exit 0
fi
exit 0
"""


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    root = tmp_path / "edgeinfer-checkout"
    (root / "scripts").mkdir(parents=True)
    (root / "edgeinfer").mkdir()
    for script in ("setup.sh", "run.sh"):
        shutil.copy2(REPO / "scripts" / script, root / "scripts" / script)
    (root / "pyproject.toml").write_text('[project]\nname = "edgeinfer"\nversion = "0.1.0"\n')
    fake = tmp_path / "bin" / "python3"
    fake.parent.mkdir()
    fake.write_text(FAKE_PYTHON)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return root


def _run(
    root: Path, *args: str, offline: bool = False, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    log = root.parent / "calls.log"
    before = log.read_text().splitlines() if log.exists() else []
    environment = {
        **os.environ,
        "PYTHON": str(root.parent / "bin" / "python3"),
        "FAKE_LOG": str(log),
        "FAKE_OFFLINE": "1" if offline else "0",
        **env,
    }
    environment.pop("EDGEINFER_SETUP", None)
    environment.update(env)
    if offline:  # and nowhere for a real pip to go, were one called
        environment["PIP_INDEX_URL"] = "http://127.0.0.1:9/simple"
        environment["PIP_NO_INDEX"] = "1"
    result = subprocess.run(
        ["bash", *args], cwd=root, env=environment, capture_output=True, text=True, timeout=60, check=False
    )
    after = log.read_text().splitlines() if log.exists() else []
    return result, after[len(before) :]


def test_first_run_installs_then_an_offline_start_installs_nothing(checkout: Path) -> None:
    first, calls = _run(checkout, "scripts/setup.sh")
    assert first.returncode == 0, first.stderr
    assert calls == [
        "venv .venv",
        "pip install --quiet --upgrade pip",
        "pip install --quiet -e .",
    ]
    stamp = (checkout / ".venv" / ".edgeinfer-setup").read_text().splitlines()
    assert len(stamp) == 1 and len(stamp[0]) == 64  # sha256 of pyproject.toml, no extras

    started = time.monotonic()
    again, calls = _run(checkout, "scripts/setup.sh", offline=True)
    assert again.returncode == 0, again.stderr
    assert calls == []  # no pip at all: neither the upgrade nor the install
    assert time.monotonic() - started < 5

    run, calls = _run(checkout, "scripts/run.sh", "--max-frames", "1", offline=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "edgeinfer run --max-frames 1\n" and calls == []


def test_a_changed_pyproject_reinstalls_and_offline_that_fails_without_a_stamp(checkout: Path) -> None:
    assert _run(checkout, "scripts/setup.sh")[0].returncode == 0
    with (checkout / "pyproject.toml").open("a") as f:
        f.write('dependencies = ["numpy"]\n')
    failed, calls = _run(checkout, "scripts/setup.sh", offline=True)
    assert failed.returncode != 0 and calls == ["pip install --quiet -e ."]
    assert not (checkout / ".venv" / ".edgeinfer-setup").exists()  # the next start tries again
    retried, calls = _run(checkout, "scripts/setup.sh")
    assert retried.returncode == 0 and calls == ["pip install --quiet -e ."]
    assert _run(checkout, "scripts/setup.sh", offline=True)[1] == []


def test_extras_dev_serves_plain_runs_and_survives_a_pyproject_change(checkout: Path) -> None:
    assert _run(checkout, "scripts/setup.sh")[0].returncode == 0
    dev, calls = _run(checkout, "scripts/setup.sh", "dev")
    assert dev.returncode == 0 and calls == ["pip install --quiet -e .[dev]"]  # plain is not enough for dev
    assert _run(checkout, "scripts/setup.sh", "dev", offline=True)[1] == []
    assert _run(checkout, "scripts/setup.sh", offline=True)[1] == []  # dev includes the plain install
    with (checkout / "pyproject.toml").open("a") as f:
        f.write("# changed\n")
    plain, calls = _run(checkout, "scripts/setup.sh")
    assert plain.returncode == 0 and calls == ["pip install --quiet -e .[dev]"]  # keeps the dev tools


def test_a_moved_checkout_or_force_reinstalls(checkout: Path) -> None:
    assert _run(checkout, "scripts/setup.sh")[0].returncode == 0
    _, calls = _run(checkout, "scripts/setup.sh", FAKE_EDGEINFER_DIR="/elsewhere/edgeinfer")
    assert calls == ["pip install --quiet -e ."]  # the venv's edgeinfer is another checkout's
    _, calls = _run(checkout, "scripts/setup.sh", EDGEINFER_SETUP="force")
    assert calls == ["pip install --quiet -e ."]
    broken = checkout / ".venv" / "bin" / "python"
    broken.unlink()
    _, calls = _run(checkout, "scripts/setup.sh")
    assert calls == ["venv .venv", "pip install --quiet --upgrade pip", "pip install --quiet -e ."]


def test_test_sh_goes_through_setup_sh() -> None:
    text = (REPO / "scripts" / "test.sh").read_text()
    assert "scripts/setup.sh dev" in text
    assert "pip install" not in text
    assert "pip install" not in (REPO / "scripts" / "run.sh").read_text()
