"""The live page in a real browser: Debian's Chromium, headless, driven by Playwright (its Python package
only; the browser is the system's, ``executable_path=/usr/bin/chromium``, never a download), against
``edgeinfer run`` as a user starts it (a subprocess, the real bundled INT8 model, basic auth on).

Cameras: two synthetic ones that deliver, an RTSP one whose server is not there (retrying, its password
redacted) and an image folder that ends (``loop: false``: down). The page must load without console
errors, show a live image per delivering camera that changes, stats that move, an event that is stored
after the page loaded, and each camera's state.

Screenshots go to ``test-artifacts/live-page/`` (git-ignored; ``EDGEINFER_ARTIFACTS`` moves it)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edgeinfer.store.sqlite import STORE_FILE, Store

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("EDGEINFER_ARTIFACTS", REPO / "test-artifacts")) / "live-page"
USER, PASSWORD = "viewer", "pole-cam-42"

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, auth: bool = True) -> tuple[int, bytes]:
    request = urllib.request.Request(url)  # noqa: S310 (loopback)
    if auth:
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def _wait(predicate: Any, timeout: float, what: str, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("live-page")
    folder = tmp / "porch"
    folder.mkdir()
    for i in range(2):  # a short image folder: it ends, and the camera is down
        image = np.full((480, 640, 3), 60, np.uint8)
        cv2.circle(image, (200 + 100 * i, 240), 60, (0, 0, 255), -1)
        cv2.imwrite(str(folder / f"{i}.png"), image)
    (tmp / "password").write_text(PASSWORD + "\n")
    closed = _free_port()  # nothing listens there
    port = _free_port()
    config = {
        "device": "pole-7",
        "data_dir": str(tmp / "data"),
        "http": {"listen": f"127.0.0.1:{port}", "username": USER, "password_file": str(tmp / "password")},
        "cameras": [
            {
                "name": "yard",
                "fps": 5,
                "source": {"type": "synthetic", "seed": 1},
                "events": {"min_interval_s": 2},
                "zones": [[[0, 0], [480, 0], [480, 480], [0, 480]]],
            },
            {
                "name": "dock",
                "fps": 5,
                "source": {"type": "synthetic", "seed": 2},
                "events": {"min_interval_s": 3},
            },
            {"name": "gate", "source": f"rtsp://cam:topsecret@127.0.0.1:{closed}/s1"},
            {"name": "porch", "fps": 5, "source": str(folder), "loop": False},
        ],
    }
    (tmp / "edgeinfer.yaml").write_text(json.dumps(config))  # JSON is YAML
    (tmp / "edgeinfer.yaml").chmod(0o600)
    log = (tmp / "daemon.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "edgeinfer", "run", "-c", str(tmp / "edgeinfer.yaml")],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(
            lambda: process.poll() is not None or _get(f"{base}/healthz", auth=False)[0] == 200,
            90,
            "the daemon",
        )
        assert process.poll() is None, (tmp / "daemon.log").read_text()
        yield {"base": base, "store": tmp / "data" / STORE_FILE, "log": tmp / "daemon.log"}
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run scripts/test-services.sh (installs the Debian package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # root in a container has no user namespaces for Chromium's sandbox
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _last_event_id(path: Path) -> int:
    store = Store(path, readonly=True)
    try:
        return store.last_event_id()
    finally:
        store.close()


def _events_after(path: Path, after_id: int) -> list[Any]:
    store = Store(path, readonly=True)
    try:
        return store.events(after_id=after_id)
    finally:
        store.close()


def test_the_page_in_chromium(daemon: dict[str, Any], browser: Any) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    base = daemon["base"]
    assert _get(f"{base}/", auth=False)[0] == 401  # the page asks for the password...
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, http_credentials={"username": USER, "password": PASSWORD}
    )
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}"))
    # ...and the browser, given it, gets the page, its scripts, the API and the streams with it
    page.goto(f"{base}/")
    loaded_after = _last_event_id(daemon["store"])
    card = {
        name: page.locator(f'article.camera[data-camera="{name}"]')
        for name in ("yard", "dock", "gate", "porch")
    }
    for name in card:
        card[name].wait_for(timeout=15_000)

    # every camera that delivered shows its picture (porch: the last frame before its folder ended; it
    # shows only if the stream sends the next part's headers right after it), and a live one changes
    for name in ("yard", "dock", "porch"):
        page.wait_for_function(
            f"document.querySelector('article[data-camera=\"{name}\"] img').naturalWidth > 0", timeout=30_000
        )
    first = card["yard"].locator("img").screenshot(path=str(ARTIFACTS / "yard-1.png"))
    page.wait_for_timeout(1500)
    second = card["yard"].locator("img").screenshot(path=str(ARTIFACTS / "yard-2.png"))
    assert first != second
    a = cv2.imdecode(np.frombuffer(first, np.uint8), cv2.IMREAD_COLOR)
    b = cv2.imdecode(np.frombuffer(second, np.uint8), cv2.IMREAD_COLOR)
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).mean() > 1.0  # the picture moved

    # camera states: up, retrying (with the redacted error), down (the folder ended)
    page.wait_for_function(
        "document.querySelector('article[data-camera=\"porch\"]').dataset.state === 'down'", timeout=30_000
    )
    for name in ("yard", "dock"):
        assert card[name].get_attribute("data-state") == "up"
        assert card[name].locator(".state").inner_text() == "up"
    page.wait_for_function(
        "document.querySelector('article[data-camera=\"gate\"]').dataset.state === 'retrying'", timeout=30_000
    )
    gate = card["gate"].locator(".detail").inner_text()
    assert "rtsp://cam:***@127.0.0.1" in gate and "topsecret" not in page.content()
    assert card["porch"].locator(".state").inner_text() == "down"
    assert "ended" in card["porch"].locator(".detail").inner_text()

    # the stats move
    frames_before = int(card["yard"].locator(".frames").inner_text())
    uptime_before = page.locator("#uptime").inner_text()
    page.wait_for_timeout(2500)
    assert int(card["yard"].locator(".frames").inner_text()) > frames_before
    assert page.locator("#uptime").inner_text() != uptime_before
    assert page.locator("#detector").inner_text().startswith("shapes-s")

    # an event stored after the page loaded appears in its list
    new = _wait(lambda: _events_after(daemon["store"], loaded_after), 30, "a new event in the store")
    event = new[0]
    page.locator(f'#events li[data-camera="{event.camera}"][data-seq="{event.doc["seq"]}"]').wait_for(
        timeout=15_000
    )

    page.screenshot(path=str(ARTIFACTS / "page.png"), full_page=True)
    phone = context.new_page()
    phone.set_viewport_size({"width": 390, "height": 844})
    phone.goto(f"{base}/")
    phone.locator('article.camera[data-camera="yard"]').wait_for(timeout=15_000)
    phone.wait_for_timeout(2000)
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width} px wide on a 390 px phone screen"
    phone.screenshot(path=str(ARTIFACTS / "phone.png"), full_page=True)
    phone.close()
    page.close()
    context.close()
    assert not problems, "\n".join(problems)
    shutil.copy(daemon["log"], ARTIFACTS / "daemon.log")
