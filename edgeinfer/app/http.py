"""A small asyncio HTTP server: /metrics (Prometheus text), /healthz, /readyz, and track snapshots
(``/api/snapshots/{camera}/{track_id}.jpg``, when the daemon sets :attr:`HttpServer.snapshots`). Loopback
by default.

Why not a library: three read-only endpoints, one request per connection, no body, no keep-alive, no TLS.
aiohttp or uvicorn would bring a dependency tree larger than the rest of the daemon's HTTP needs, and
prometheus_client's own server is a thread per connection with no request deadline. What a server exposed
to a network has to get right is here and tested with real sockets:

- a deadline for the whole request (request line, headers and writing the response), not per line: a
  client trickling header lines, or never reading the response, is cut off after ``request_timeout_s``
  (408 when it had not finished sending the request);
- a cap on open connections: one over ``max_connections`` gets 503 at once and is closed;
- limits: a request line over ``MAX_REQUEST_LINE`` bytes gets 414, a header line over it or headers over
  ``MAX_HEADER_BYTES`` in all 431, a request line that is not HTTP 400;
- GET and HEAD only: other methods get 405 with ``Allow: GET, HEAD``;
- its own accept loop: when accepting fails (out of file descriptors, say) it logs once when that starts
  and once when it has worked again for ``ACCEPT_QUIET_S``, with the count in between, and pauses between
  tries (asyncio's server logs a traceback per failure).

``edgeinfer_http_connections_rejected_total{reason=over_capacity|timeout|bad_request}`` and
``edgeinfer_http_accept_errors_total`` count what was refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from edgeinfer.errors import EdgeInferError
from edgeinfer.tracking.snapshots import URL_PREFIX, SnapshotStore, parse_snapshot_path

logger = logging.getLogger(__name__)

MAX_REQUEST_LINE = 8192
MAX_HEADER_BYTES = 32768
MAX_HEADER_LINES = 100
ACCEPT_RETRY_S = (0.05, 1.0)  # first and longest pause after a failed accept
ACCEPT_QUIET_S = 2.0  # accepting is back to normal after this long without a failure
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    414: "URI Too Long",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status)
        self.status = status
        self.reason = reason  # the metric's label


class HttpServer:
    def __init__(
        self,
        listen: str,
        registry: CollectorRegistry,
        healthy: Callable[[], tuple[bool, str]],
        ready: Callable[[], tuple[bool, str]],
        *,
        max_connections: int = 16,
        request_timeout_s: float = 5.0,
    ) -> None:
        host, _, port = listen.rpartition(":")
        self.host, self.port = host or "127.0.0.1", int(port)
        self._registry, self._healthy, self._ready = registry, healthy, ready
        self.max_connections = max_connections
        self.request_timeout_s = request_timeout_s
        self.serving = 0  # connections being served (at most max_connections)
        self.snapshots: SnapshotStore | None = None  # serves /api/snapshots/... when set
        self._sock: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._accept_quiet: asyncio.TimerHandle | None = None  # set while accepting fails
        self._accept_failures = 0
        self.rejected = Counter(
            "edgeinfer_http_connections_rejected",
            "HTTP connections answered with an error and closed, by reason.",
            ["reason"],
            registry=registry,
        )
        self.accept_errors = Counter(
            "edgeinfer_http_accept_errors",
            "Failed accepts (e.g. out of file descriptors).",
            registry=registry,
        )

    async def start(self) -> None:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family, kind, proto, _, address = infos[0]
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(address)
                sock.listen(128)
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
        except OSError as exc:
            raise EdgeInferError(
                f"http: cannot listen on {self.host}:{self.port}: {exc.strerror or exc} "
                "(set http.listen or http.enabled)"
            ) from None
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._accepting = asyncio.create_task(self._accept_loop(sock), name="http-accept")
        logger.info("http: /metrics /healthz /readyz on %s:%d", self.host, self.port)

    async def close(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
            self._accepting = None
        if self._accept_quiet is not None:
            self._accept_quiet.cancel()
            self._accept_quiet = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    # ----------------------------------------------------------------- accepting

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        pause = ACCEPT_RETRY_S[0]
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR, errno.EAGAIN):
                    continue  # that client gave up before we accepted it
                self.accept_errors.inc()
                self._accept_failures += 1
                if self._accept_quiet is None:
                    logger.error("http: cannot accept connections on port %d: %s; retrying", self.port, exc)
                else:
                    self._accept_quiet.cancel()
                # Back to normal only after ACCEPT_QUIET_S without a failure: at the fd limit every closed
                # connection lets one accept through before the next fails, which is no recovery.
                self._accept_quiet = loop.call_later(ACCEPT_QUIET_S, self._accepting_again)
                await asyncio.sleep(pause)
                pause = min(pause * 2, ACCEPT_RETRY_S[1])
                continue
            if self._accept_quiet is None:
                pause = ACCEPT_RETRY_S[0]
            task = asyncio.create_task(self._connection(conn), name="http-connection")
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

    def _accepting_again(self) -> None:
        logger.warning("http: accepting connections again (%d failed accepts before)", self._accept_failures)
        self._accept_quiet, self._accept_failures = None, 0

    async def _connection(self, conn: socket.socket) -> None:
        try:
            reader, writer = await asyncio.open_connection(sock=conn, limit=MAX_REQUEST_LINE)
        except OSError:
            conn.close()
            return
        try:
            if self.serving >= self.max_connections:
                self.rejected.labels("over_capacity").inc()
                self._respond(writer, 503, b"too many connections\n", extra="Retry-After: 1\r\n")
                await self._finish(reader, writer, 1.0)
                return
            self.serving += 1
            try:
                await self._serve(reader, writer)
            finally:
                self.serving -= 1
        except (TimeoutError, OSError):  # ConnectionError, or ENOTCONN from shutdown(): the client left
            pass
        finally:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (TimeoutError, OSError):
                writer.transport.abort()  # a client that never reads what is left: drop it

    @staticmethod
    async def _finish(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, within: float) -> None:
        """Send what was written, then end our side and read (and drop) what the client still sends
        until it closes: closing with unread data would reset the connection, and the client could lose
        the response before reading it."""
        async with asyncio.timeout(within):
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            while await reader.read(65536):
                pass

    # ----------------------------------------------------------------- one request

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self.request_timeout_s):
                try:
                    method, path = await self._read_request(reader)
                except _Refused as refused:
                    self.rejected.labels(refused.reason).inc()
                    self._respond(writer, refused.status, f"{_REASONS[refused.status].lower()}\n".encode())
                else:
                    if not await self._answer_snapshot(writer, method, path):
                        self._answer(writer, method, path)
                await writer.drain()
        except TimeoutError:
            self.rejected.labels("timeout").inc()
            if writer.transport.get_write_buffer_size() == 0:  # it was still sending the request
                self._respond(writer, 408, b"request timeout\n")
            with contextlib.suppress(TimeoutError, OSError):
                await asyncio.wait_for(writer.drain(), 0.5)
            return
        with contextlib.suppress(TimeoutError, OSError):
            await self._finish(reader, writer, 0.5)

    async def _read_request(self, reader: asyncio.StreamReader) -> tuple[str, str]:
        """(method, path) of a complete request (line and headers read); raises _Refused."""
        line = await self._read_line(reader, 414)
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            raise _Refused(400, "bad_request")
        total = 0
        for _ in range(MAX_HEADER_LINES + 1):
            header = await self._read_line(reader, 431)
            if header in (b"\r\n", b"\n"):
                return parts[0], parts[1].split("?")[0]
            total += len(header)
            if total > MAX_HEADER_BYTES:
                raise _Refused(431, "bad_request")
        raise _Refused(431, "bad_request")

    @staticmethod
    async def _read_line(reader: asyncio.StreamReader, too_long: int) -> bytes:
        try:
            return await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise _Refused(too_long, "bad_request") from None
        except asyncio.IncompleteReadError:
            raise ConnectionResetError("the client closed before the request ended") from None

    async def _answer_snapshot(self, writer: asyncio.StreamWriter, method: str, path: str) -> bool:
        """``GET /api/snapshots/{camera}/{track_id}.jpg``: a track's best frame. False: not this route."""
        if self.snapshots is None or method not in ("GET", "HEAD") or not path.startswith(URL_PREFIX):
            return False
        parsed = parse_snapshot_path(path)
        jpeg = None if parsed is None else await asyncio.to_thread(self.snapshots.read, *parsed)
        if jpeg is None:
            self._respond(writer, 404, b"no such snapshot\n", head=method == "HEAD")
        else:
            self._respond(writer, 200, jpeg, "image/jpeg", head=method == "HEAD")
        return True

    def _answer(self, writer: asyncio.StreamWriter, method: str, path: str) -> None:
        if method not in ("GET", "HEAD"):
            self.rejected.labels("bad_request").inc()
            self._respond(writer, 405, b"method not allowed\n", extra="Allow: GET, HEAD\r\n")
        elif path == "/metrics":
            self._respond(
                writer, 200, generate_latest(self._registry), CONTENT_TYPE_LATEST, head=method == "HEAD"
            )
        elif path in ("/healthz", "/readyz"):
            ok, why = (self._healthy if path == "/healthz" else self._ready)()
            self._respond(writer, 200 if ok else 503, (why + "\n").encode(), head=method == "HEAD")
        else:
            self._respond(writer, 404, b"not found\n", head=method == "HEAD")

    @staticmethod
    def _respond(
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        ctype: str = "text/plain",
        *,
        extra: str = "",
        head: bool = False,
    ) -> None:
        lines = (
            f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n"
        )
        writer.write(lines.encode() + (b"" if head else body))
