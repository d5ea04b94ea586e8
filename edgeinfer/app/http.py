"""A small asyncio HTTP server: /metrics (Prometheus text), /healthz, /readyz. Loopback by default."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from edgeinfer.errors import EdgeInferError

logger = logging.getLogger(__name__)


class HttpServer:
    def __init__(
        self,
        listen: str,
        registry: CollectorRegistry,
        healthy: Callable[[], tuple[bool, str]],
        ready: Callable[[], tuple[bool, str]],
    ) -> None:
        host, _, port = listen.rpartition(":")
        self.host, self.port = host or "127.0.0.1", int(port)
        self._registry, self._healthy, self._ready = registry, healthy, ready
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._handle, self.host, self.port)
        except OSError as exc:
            raise EdgeInferError(
                f"http: cannot listen on {self.host}:{self.port}: {exc.strerror} (set http.listen or http.enabled)"
            ) from None
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("http: /metrics /healthz /readyz on %s:%d", self.host, self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass  # headers: nothing we need
            parts = request.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            if path == "/metrics":
                status, ctype, body = 200, CONTENT_TYPE_LATEST, generate_latest(self._registry)
            elif path in ("/healthz", "/readyz"):
                ok, why = (self._healthy if path == "/healthz" else self._ready)()
                status, ctype, body = (200 if ok else 503), "text/plain", (why + "\n").encode()
            else:
                status, ctype, body = 404, "text/plain", b"not found\n"
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
