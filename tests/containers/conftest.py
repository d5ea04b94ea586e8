"""Fixtures for the container tests: podman, the two images built once per session, and cleanup.

The images are built by scripts/build-images.sh (the same script a user runs), once per test session; the
base rootfs is cached under build/containers and podman's layer cache makes a rebuild of unchanged code
quick. Every container and volume a test makes is named with a per-session prefix and removed when the
test ends, also when it fails. podman missing is a failure (scripts/test-services.sh installs it), not a
skip: a container test that does not run says so in red.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = {"amd64": "localhost/edgeinfer:dev-amd64", "arm64": "localhost/edgeinfer:dev-arm64"}
# Under Debian bookworm's qemu-user (7.2), two things differ from a real Arm CPU (containers/README.md,
# "arm64 runtime"): it shows the host's x86 /proc/cpuinfo, which LiteRT >= 2.2 crashes on, so the container
# gets a Raspberry Pi 4's; and its default CPU model (`max`) makes XNNPACK compute a different (wrong)
# output, so the emulated CPU is a Pi 4's Cortex-A72. A real Arm machine needs neither.
ARM_CPUINFO = ROOT / "containers" / "probe" / "cpuinfo-arm64"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(ROOT / "containers" / "podman" / "containers.conf"))
    return env


def podman(*args: str, timeout: float = 300, check: bool = True, input: str | None = None):
    """Run podman; on failure (check=True) the assertion shows the command and its output's tail."""
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, env=podman_env(), input=input
    )
    if check:
        assert result.returncode == 0, (
            f"podman {' '.join(args)} exited {result.returncode}\n"
            f"--- stdout (tail)\n{result.stdout[-3000:]}\n--- stderr (tail)\n{result.stderr[-3000:]}"
        )
    return result


def arm64_run_args() -> list[str]:
    """`podman run` options for an arm64 container here: the platform, and an Arm cpuinfo under old qemu."""
    args = ["--platform", "linux/arm64"]
    native = subprocess.run(["uname", "-m"], capture_output=True, text=True).stdout.strip() == "aarch64"
    if not native:
        args += ["-v", f"{ARM_CPUINFO}:/proc/cpuinfo:ro", "-e", "QEMU_CPU=cortex-a72"]
    return args


@pytest.fixture(scope="session")
def built_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Both images, built by scripts/build-images.sh --save; returns the saved docker-archives per arch."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: scripts/test-services.sh installs it (and mmdebstrap, qemu)")
    saved = tmp_path_factory.mktemp("images")
    command = [str(ROOT / "scripts" / "build-images.sh"), "--arch", "all", "--save", str(saved)]
    if HOST_CA_BUNDLE.is_file():  # for a TLS-intercepting proxy (CI); harmless elsewhere
        command += ["--ca-bundle", str(HOST_CA_BUNDLE)]
    log = saved / "build.log"
    with log.open("w") as out:
        # its own process group, so a timeout or Ctrl-C stops the podman builds under it too
        build = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=podman_env(), start_new_session=True
        )
        try:
            returncode = build.wait(timeout=1500)
        except BaseException:
            os.killpg(build.pid, signal.SIGTERM)
            build.wait(60)
            raise
    assert returncode == 0, f"scripts/build-images.sh failed:\n{log.read_text()[-6000:]}"
    for arch, tag in IMAGES.items():
        inspect = json.loads(podman("image", "inspect", tag).stdout)[0]
        assert inspect["Architecture"] == arch, f"{tag} is {inspect['Architecture']}"
    return {arch: saved / f"edgeinfer-dev-{arch}.tar" for arch in IMAGES}


class Podman:
    """Names containers and volumes for one test and removes them afterwards."""

    def __init__(self) -> None:
        self.prefix = f"edgeinfer-test-{uuid.uuid4().hex[:8]}"
        self.containers: list[str] = []
        self.volumes: list[str] = []

    def name(self, what: str) -> str:
        name = f"{self.prefix}-{what}"
        self.containers.append(name)
        return name

    def volume(self, what: str) -> str:
        name = f"{self.prefix}-{what}"
        podman("volume", "create", name)
        self.volumes.append(name)
        return name

    def cleanup(self) -> None:
        for name in reversed(self.containers):
            podman("rm", "--force", "--time", "5", name, check=False, timeout=60)
        for name in self.volumes:
            podman("volume", "rm", "--force", name, check=False, timeout=60)


@pytest.fixture
def pod() -> Iterator[Podman]:
    p = Podman()
    try:
        yield p
    finally:
        p.cleanup()
