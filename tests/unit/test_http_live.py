"""The live page's routes on the real HTTP server, over real sockets on 127.0.0.1: MJPEG framing (read
back with the standard library's MIME parser and OpenCV's JPEG decoder), basic auth, streams outside the
request deadline, a client leaving or stalling, /api/events on a real store."""

from __future__ import annotations

import asyncio
import base64
import email.parser
import json
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from edgeinfer.app import mjpeg
from edgeinfer.app.auth import BasicAuth, insecure_listen_warning
from edgeinfer.app.http import HttpServer
from edgeinfer.app.livehub import LiveHub
from edgeinfer.app.web import StoreEvents, WebApi
from edgeinfer.config import CameraConfig
from edgeinfer.detect.detections import Detections
from edgeinfer.sources.frame import Frame
from edgeinfer.store.sqlite import EventRow, Store

LABELS = ["circle", "square", "triangle"]


def _frame(seq: int, camera: str = "dock", noise: bool = False) -> Frame:
    if noise:  # large JPEGs: fills socket buffers quickly
        image = np.random.default_rng(seq).integers(0, 255, (480, 640, 3), np.uint8)
    else:
        image = np.full((240, 320, 3), (seq * 9) % 255, np.uint8)
    return Frame(camera, seq, image, time.time_ns(), time.monotonic())


def _dets() -> Detections:
    return Detections(
        np.array([[20, 30, 120, 140]], np.float32), np.array([0.9], np.float32), np.array([1], np.int64)
    )


class Setup:
    def __init__(self, server: HttpServer, hub: LiveHub) -> None:
        self.server, self.hub = server, hub
        self.seq = 0

    def publish(self, camera: str = "dock", noise: bool = False) -> None:
        self.hub.publish(_frame(self.seq, camera, noise), _dets())
        self.seq += 1

    async def publishing(self, every: float = 0.02, noise: bool = False) -> None:
        while True:
            self.publish(noise=noise)
            await asyncio.sleep(every)


def _run(
    test: Callable[[Setup], Awaitable[None]],
    *,
    auth: BasicAuth | None = None,
    events: Any = None,
    fps: float = 10.0,
    stall_s: float = 10.0,
    **kwargs: float,
) -> None:
    async def no_events(camera: str | None, since: int | None, limit: int) -> list[dict[str, Any]]:
        return []

    async def status() -> dict[str, Any]:
        return {"uptime_s": 1.0, "cameras": []}

    async def main() -> None:
        cameras = [CameraConfig(name="dock", source=0), CameraConfig(name="gate", source=1)]
        hub = LiveHub(cameras, LABELS, fps=fps, width=640)
        web = WebApi(hub, status, events or no_events, stall_s=stall_s)
        server = HttpServer(
            "127.0.0.1:0",
            CollectorRegistry(),
            lambda: (True, "healthy"),
            lambda: (True, "ready"),
            routes=web.routes(),
            auth=auth,
            **kwargs,  # type: ignore[arg-type]
        )
        await server.start()
        try:
            await test(Setup(server, hub))
        finally:
            await server.close()
            await hub.close()

    asyncio.run(main())


async def _get(port: int, path: str, headers: str = "") -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 5.0)
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), fields, body


async def _open_stream(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK", lines
    ctype = next(line.split(": ", 1)[1] for line in lines if line.lower().startswith("content-type:"))
    return reader, writer, ctype


async def _read_parts(reader: asyncio.StreamReader, count: int) -> bytes:
    """The stream's body up to and including what closes part number ``count`` (the next one's headers)."""
    body = await asyncio.wait_for(reader.readuntil(mjpeg.OPENING), 5.0)
    for _ in range(count):
        body += await asyncio.wait_for(reader.readuntil(mjpeg.DELIMITER + mjpeg.PART_HEADERS), 5.0)
    return body


def _parse_multipart(ctype: str, body: bytes) -> list[tuple[str, bytes]]:
    """Parts as the standard library's MIME parser reads them, once the stream is closed with the final
    delimiter in place of the last part's opening."""
    assert body.endswith(mjpeg.DELIMITER + mjpeg.PART_HEADERS)
    closed = body[: -len(mjpeg.DELIMITER + mjpeg.PART_HEADERS)] + f"\r\n--{mjpeg.BOUNDARY}--\r\n".encode()
    message = email.parser.BytesParser().parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + closed)
    assert message.is_multipart()
    return [(part.get_content_type(), part.get_payload(decode=True)) for part in message.get_payload()]


# ---------------------------------------------------------------------------- MJPEG


def test_live_mjpg_is_multipart_jpeg_a_browser_and_a_mime_parser_can_read() -> None:
    async def test(s: Setup) -> None:
        feeder = asyncio.create_task(s.publishing())
        reader, writer, ctype = await _open_stream(s.server.port, "/api/cameras/dock/live.mjpg")
        body = await _read_parts(reader, 4)
        writer.close()
        feeder.cancel()
        assert ctype == f"multipart/x-mixed-replace; boundary={mjpeg.BOUNDARY}"
        parts = _parse_multipart(ctype, body)
        assert len(parts) == 4
        frames = []
        for content_type, payload in parts:
            assert content_type == "image/jpeg"
            image = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
            assert image is not None and image.shape == (240, 320, 3)
            frames.append(image)
        # the frames move on: each part shows a newer frame (their grey levels differ)
        assert len({int(f[200, 300, 0]) for f in frames}) == 4

    _run(test)


def test_latest_jpg_unknown_cameras_and_no_frame_yet() -> None:
    async def test(s: Setup) -> None:
        status, _, body = await _get(s.server.port, "/api/cameras/dock/latest.jpg")
        assert status == 503 and b"no frame" in body
        s.publish()
        status, fields, body = await _get(s.server.port, "/api/cameras/dock/latest.jpg")
        assert status == 200 and fields["Content-Type"] == "image/jpeg"
        image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (240, 320, 3)
        for path in ("/api/cameras/nope/latest.jpg", "/api/cameras/nope/live.mjpg"):
            status, _, body = await _get(s.server.port, path)
            assert status == 404 and json.loads(body) == {"error": "no camera 'nope'"}

    _run(test)


def test_a_stream_runs_past_the_request_deadline() -> None:
    async def test(s: Setup) -> None:
        feeder = asyncio.create_task(s.publishing())
        reader, writer, _ = await _open_stream(s.server.port, "/api/cameras/dock/live.mjpg")
        await _read_parts(reader, 1)
        await asyncio.sleep(1.0)  # twice the request deadline
        assert len(await reader.read(65536)) > 0  # still streaming
        writer.close()
        feeder.cancel()

    _run(test, request_timeout_s=0.5)


def test_a_client_that_leaves_ends_its_stream_and_frees_its_slot() -> None:
    async def test(s: Setup) -> None:
        # camera "gate" never delivers: the stream waits for a frame, and must still notice the close
        _, writer, _ = await _open_stream(s.server.port, "/api/cameras/gate/live.mjpg")
        for _ in range(100):  # the stream's task starts right after the headers went out
            if s.hub.viewers("gate") == 1:
                break
            await asyncio.sleep(0.01)
        assert s.hub.viewers("gate") == 1 and s.server.serving == 1
        writer.close()
        for _ in range(100):
            if s.hub.viewers("gate") == 0 and s.server.serving == 0:
                break
            await asyncio.sleep(0.02)
        assert s.hub.viewers("gate") == 0 and s.server.serving == 0

    _run(test)


def test_a_viewer_that_stops_reading_is_dropped_and_the_others_keep_streaming() -> None:
    async def test(s: Setup) -> None:
        feeder = asyncio.create_task(s.publishing(every=0.01, noise=True))  # ~300 KB JPEGs
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", s.server.port))
        stalled.sendall(b"GET /api/cameras/dock/live.mjpg HTTP/1.1\r\n\r\n")  # and never reads
        reader, writer, _ = await _open_stream(s.server.port, "/api/cameras/dock/live.mjpg")
        await _read_parts(reader, 1)
        for _ in range(200):
            if s.hub.viewers("dock") == 2:  # both streams run
                break
            await asyncio.sleep(0.01)
        assert s.hub.viewers("dock") == 2
        received, started = 0, time.monotonic()
        while s.hub.viewers("dock") == 2 and time.monotonic() - started < 30:
            received += len(await asyncio.wait_for(reader.read(1 << 20), 5.0))
        assert s.hub.viewers("dock") == 1, "the stalled viewer was not dropped"
        before = received
        await _read_parts(reader, 3)  # the reading viewer goes on
        assert received >= before
        writer.close()
        feeder.cancel()
        stalled.close()

    _run(test, fps=30.0, stall_s=0.5)


# ---------------------------------------------------------------------------- auth

CREDENTIALS = BasicAuth("admin", SecretStr("s3cret:with colon"))


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        (None, False),
        ("", False),
        (_basic("admin", "s3cret:with colon"), True),
        ("basic " + _basic("admin", "s3cret:with colon").split()[1], True),  # the scheme is case-blind
        (_basic("admin", "s3cret"), False),
        (_basic("Admin", "s3cret:with colon"), False),
        (_basic("admin", "s3cret:with colon") + "=", False),  # bad base64
        ("Basic !!!!", False),
        ("Basic " + base64.b64encode(b"admin").decode(), False),  # no colon
        ("Bearer " + _basic("admin", "s3cret:with colon").split()[1], False),
        ("Basic", False),
    ],
)
def test_basic_auth_check(header: str | None, allowed: bool) -> None:
    assert CREDENTIALS.allows(header) is allowed


def test_the_password_is_not_in_the_checkers_repr() -> None:
    assert "s3cret" not in repr(CREDENTIALS) and "s3cret" not in str(CREDENTIALS)


def test_auth_guards_the_page_api_and_metrics_but_not_healthz() -> None:
    async def test(s: Setup) -> None:
        port = s.server.port
        for path in ("/", "/assets/app.js", "/api/status", "/api/events", "/metrics", "/readyz"):
            status, fields, _ = await _get(port, path)
            assert status == 401, path
            assert fields["WWW-Authenticate"].startswith('Basic realm="edgeinfer"')
            wrong = f"Authorization: {_basic('admin', 'guess')}\r\n"
            assert (await _get(port, path, wrong))[0] == 401, path
            right = f"Authorization: {_basic('admin', 's3cret:with colon')}\r\n"
            assert (await _get(port, path, right))[0] == 200, path
        assert (await _get(port, "/healthz"))[0] == 200
        assert s.server.rejected.labels("unauthorized")._value.get() == 12
        status, _, _ = await _get(port, "/api/cameras/dock/live.mjpg")
        assert status == 401  # no stream is opened for it
        assert s.hub.viewers("dock") == 0

    _run(test, auth=CREDENTIALS)


@pytest.mark.parametrize(
    ("host", "auth", "warns"),
    [
        ("127.0.0.1", False, False),
        ("::1", False, False),
        ("localhost", False, False),
        ("0.0.0.0", False, True),  # noqa: S104
        ("", False, True),
        ("192.168.1.20", False, True),
        ("edge-box.lan", False, True),
        ("0.0.0.0", True, False),  # noqa: S104
    ],
)
def test_startup_warning_when_served_beyond_loopback_without_auth(host: str, auth: bool, warns: bool) -> None:
    assert (insecure_listen_warning(host, auth) is not None) is warns


# ---------------------------------------------------------------------------- page and API


def test_the_page_and_its_assets_are_served_from_package_data() -> None:
    async def test(s: Setup) -> None:
        status, fields, body = await _get(s.server.port, "/")
        assert status == 200 and fields["Content-Type"].startswith("text/html")
        assert b'<script src="/assets/app.js">' in body and b"http://" not in body and b"https://" not in body
        for name, ctype in (("app.js", "text/javascript"), ("style.css", "text/css")):
            status, fields, body = await _get(s.server.port, f"/assets/{name}")
            assert status == 200 and fields["Content-Type"].startswith(ctype) and body
            assert b"http://" not in body and b"https://" not in body  # nothing from a CDN
        for path in ("/assets/../web.py", "/assets/index.html", "/assets/nope.js"):
            assert (await _get(s.server.port, path))[0] == 404, path

    _run(test)


def test_api_events_reads_the_store_with_camera_since_and_limit(tmp_path: Path) -> None:
    store = Store(tmp_path / "edgeinfer.db")
    now = time.time_ns()
    rows = [
        EventRow(cam, now - (10 - i) * 60 * 10**9, json.dumps({"camera": cam, "seq": i, "detections": []}), i)
        for i, cam in enumerate(["dock", "gate"] * 5)
    ]
    store.append(rows)
    store.close()
    reader = StoreEvents(tmp_path / "edgeinfer.db")

    async def test(s: Setup) -> None:
        async def get(query: str) -> tuple[int, Any]:
            status, _, body = await _get(s.server.port, f"/api/events{query}")
            return status, json.loads(body)

        status, events = await get("")
        assert status == 200 and [e["seq"] for e in events] == list(range(10))
        assert [e["seq"] for e in (await get("?limit=3"))[1]] == [7, 8, 9]  # the newest 3, oldest first
        assert [e["seq"] for e in (await get("?camera=gate&limit=2"))[1]] == [7, 9]
        assert [e["seq"] for e in (await get("?since=330s"))[1]] == [5, 6, 7, 8, 9]
        status, body = await get("?limit=zero")
        assert status == 400 and "expected a whole number from 1 to 1000" in body["error"]
        status, body = await get("?since=yesterday")
        assert status == 400 and body["error"].startswith("since 'yesterday': expected")
        await reader.close()

    _run(test, events=reader.read)
