"""/readyz and /metrics name each camera with its state, over real HTTP from the real daemon: a synthetic
camera that delivers, and an RTSP camera (a password in its URL) whose server is not there (OpenCV's
real FFmpeg backend gets "connection refused"). Real bundled model."""

from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request

import pytest

from edgeinfer.app.daemon import Daemon
from edgeinfer.config import Config, DetectorConfig
from edgeinfer.detect.build import open_detector


@pytest.fixture(scope="module")
def detector():
    d = open_detector(DetectorConfig())
    yield d
    d.close()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 (loopback)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_readyz_names_the_camera_that_is_retrying_with_its_redacted_error(tmp_path, detector):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]  # nothing listens here once the socket is closed
    config = Config.model_validate(
        {
            "device": "box",
            "data_dir": str(tmp_path),
            "http": {"listen": "127.0.0.1:0"},
            "cameras": [
                {"name": "yard", "fps": 10, "source": {"type": "synthetic", "seed": 1, "prerender": 4}},
                {"name": "gate", "source": f"rtsp://cam:secretpw@127.0.0.1:{closed}/s1"},
            ],
        }
    )
    daemon = Daemon(config, detector=detector, status_interval=3600)
    seen: dict[str, tuple[int, str]] = {}

    async def probe() -> None:
        while daemon.http is None:  # noqa: ASYNC110 (started by run())
            await asyncio.sleep(0.05)
        base = f"http://127.0.0.1:{daemon.http.port}"
        for _ in range(200):
            seen["readyz"] = await asyncio.to_thread(_get, f"{base}/readyz")
            if "retrying: gate" in seen["readyz"][1] and "delivering: yard" in seen["readyz"][1]:
                break
            await asyncio.sleep(0.1)
        seen["healthz"] = await asyncio.to_thread(_get, f"{base}/healthz")
        seen["metrics"] = await asyncio.to_thread(_get, f"{base}/metrics")
        daemon.stop.set()

    async def main() -> None:
        task = asyncio.create_task(probe())
        await asyncio.wait_for(daemon.run(), 60)
        await task

    asyncio.run(main())
    status, text = seen["readyz"]
    assert status == 200, text
    assert text.startswith("model shapes-s"), text
    assert "delivering: yard; retrying: gate (rtsp://cam:***@127.0.0.1:" in text, text
    assert "OpenCV could not open it" in text and "error(s), no frame yet)" in text, text
    assert "secretpw" not in text and "cam:***@127.0.0.1" in text
    assert seen["healthz"][0] == 200
    metrics = seen["metrics"][1]
    assert 'edgeinfer_camera_state{camera="gate",state="retrying"} 1.0' in metrics
    assert 'edgeinfer_camera_state{camera="yard",state="up"} 1.0' in metrics
    assert 'edgeinfer_camera_restarts_total{camera="gate",reason="error"}' in metrics
    assert "secretpw" not in metrics
