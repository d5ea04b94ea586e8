"""The live page and its read-only API, as routes for :class:`~edgeinfer.app.http.HttpServer`:

- ``/`` and ``/assets/{file}``: the page (plain HTML, CSS and a little JS from package data, no CDN);
- ``/api/cameras/{name}/live.mjpg``: MJPEG of the annotated frames (:mod:`edgeinfer.app.livehub`);
- ``/api/cameras/{name}/latest.jpg``: the latest annotated frame;
- ``/api/events?camera=&since=&limit=``: recent events, oldest first, the objects ``edgeinfer events
  --json`` prints (read through a read-only connection to the store, on a thread of its own);
- ``/api/status``: the stats snapshot plus each camera's state, the detector and the sinks.

A viewer whose socket takes no data for ``stall_s`` is dropped: with the hub keeping one frame per
viewer, a client that stopped reading holds a connection slot for that long and no more memory.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

from edgeinfer.app import mjpeg
from edgeinfer.app.http import Request, Response, Route, Stream
from edgeinfer.app.livehub import LiveHub
from edgeinfer.errors import EdgeInferError
from edgeinfer.tracking.snapshots import URL_PREFIX, SnapshotStore

STALL_S = 10.0
DEFAULT_EVENTS = 50
MAX_EVENTS = 1000
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_NO_STORE = "Cache-Control: no-store\r\n"


def _json(value: Any, status: int = 200) -> Response:
    body = json.dumps(value, separators=(",", ":")).encode()
    return Response(status, body, "application/json", _NO_STORE)


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


def load_assets() -> dict[str, bytes]:
    """The page's files, from package data (read once)."""
    folder = resources.files("edgeinfer").joinpath("web")
    return {name: folder.joinpath(name).read_bytes() for name in ASSETS}


class StoreEvents:
    """Events from the store through a read-only connection of its own, on one thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._store: Any = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="edgeinfer.web-events")

    def _read(self, camera: str | None, since_ns: int | None, limit: int) -> list[dict[str, Any]]:
        from edgeinfer.commands.events import read_events
        from edgeinfer.store.sqlite import Store

        if self._store is None:
            self._store = Store(self.path, readonly=True, changing=True)
        return [dict(e.doc) for e in read_events(self._store, camera=camera, since_ns=since_ns, limit=limit)]

    async def read(self, camera: str | None, since_ns: int | None, limit: int) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._read, camera, since_ns, limit)

    def _close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    async def close(self) -> None:
        if self._store is not None:  # never asked: no thread was started, none to start now
            await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=False)


EventsReader = Callable[[str | None, int | None, int], Awaitable[list[dict[str, Any]]]]


class WebApi:
    def __init__(
        self,
        hub: LiveHub,
        status: Callable[[], Awaitable[dict[str, Any]]],
        events: EventsReader,
        *,
        stall_s: float = STALL_S,
        assets: dict[str, bytes] | None = None,
    ) -> None:
        self.hub, self._status, self._events, self.stall_s = hub, status, events, stall_s
        self._assets = assets if assets is not None else load_assets()

    def routes(self) -> list[Route]:
        return [
            Route("/", self.page),
            Route("/assets/{file}", self.asset),
            Route("/api/status", self.status),
            Route("/api/events", self.events),
            Route("/api/cameras/{name}/latest.jpg", self.latest),
            Route("/api/cameras/{name}/live.mjpg", self.live),
        ]

    async def page(self, request: Request) -> Response:
        return Response(200, self._assets["index.html"], ASSETS["index.html"], _NO_STORE)

    async def asset(self, request: Request) -> Response:
        name = request.params["file"]
        if name == "index.html" or name not in self._assets:
            return Response(404, b"not found\n")
        return Response(200, self._assets[name], ASSETS[name], "Cache-Control: no-cache\r\n")

    async def status(self, request: Request) -> Response:
        return _json(await self._status())

    async def events(self, request: Request) -> Response:
        from edgeinfer.commands.events import parse_since

        camera = request.query.get("camera") or None
        try:
            since_ns = parse_since(request.query["since"]) if request.query.get("since") else None
        except EdgeInferError as exc:
            return _error(400, str(exc).replace("--since", "since"))
        text = request.query.get("limit") or str(DEFAULT_EVENTS)
        if not text.isdigit() or not 1 <= int(text) <= MAX_EVENTS:
            return _error(400, f"limit {text!r}: expected a whole number from 1 to {MAX_EVENTS}")
        return _json(await self._events(camera, since_ns, int(text)))

    async def latest(self, request: Request) -> Response:
        camera = request.params["name"]
        if camera not in self.hub:
            return _error(404, f"no camera {camera!r}")
        jpeg = await self.hub.latest_jpeg(camera)
        if jpeg is None:
            return Response(503, b"no frame from this camera yet\n", headers="Retry-After: 1\r\n")
        return Response(200, jpeg, "image/jpeg", _NO_STORE)

    async def live(self, request: Request) -> Response | Stream:
        camera = request.params["name"]
        if camera not in self.hub:
            return _error(404, f"no camera {camera!r}")

        async def send(writer: asyncio.StreamWriter) -> None:
            with self.hub.watch(camera) as viewer:
                writer.write(mjpeg.OPENING)
                while True:
                    jpeg = await viewer.next()
                    writer.write(mjpeg.part(jpeg))
                    async with asyncio.timeout(self.stall_s):  # a client that stopped reading: let it go
                        await writer.drain()

        return Stream(mjpeg.CONTENT_TYPE, send)


def snapshot_route(snapshots: SnapshotStore) -> Route:
    """``GET /api/snapshots/{camera}/{track_id}.jpg``: a track's best frame (tracking's snapshots)."""

    async def answer(request: Request) -> Response:
        jpeg = await asyncio.to_thread(snapshots.read, request.params["camera"], request.params["track_id"])
        return Response(404, b"no such snapshot\n") if jpeg is None else Response(200, jpeg, "image/jpeg")

    return Route(URL_PREFIX + "{camera}/{track_id}.jpg", answer)
