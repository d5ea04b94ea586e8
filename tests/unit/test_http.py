"""The /metrics /healthz /readyz server with real sockets on 127.0.0.1: limits, deadline, cap, accept errors."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter

from edgeinfer.app.http import HttpServer

ROOT = Path(__file__).resolve().parents[2]


def _server(**kwargs: float) -> HttpServer:
    registry = CollectorRegistry()
    Counter("edgeinfer_test_things", "A counter to find in /metrics.", registry=registry).inc(3)
    return HttpServer(
        "127.0.0.1:0", registry, lambda: (True, "healthy"), lambda: (False, "no frame yet"), **kwargs
    )  # type: ignore[arg-type]


def _run(test: Callable[[HttpServer], Awaitable[None]], **kwargs: float) -> None:
    async def main() -> None:
        server = _server(**kwargs)
        await server.start()
        try:
            await test(server)
        finally:
            await server.close()

    asyncio.run(main())


async def _exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 5.0)
    finally:
        writer.close()


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_endpoints_answer_get_and_head() -> None:
    async def test(server: HttpServer) -> None:
        metrics = await _exchange(server.port, b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n")
        assert _status(metrics) == 200 and b"edgeinfer_test_things_total 3.0" in metrics
        assert b"Connection: close" in metrics
        healthz = await _exchange(server.port, b"GET /healthz HTTP/1.1\r\n\r\n")
        assert _status(healthz) == 200 and healthz.endswith(b"\r\n\r\nhealthy\n")
        readyz = await _exchange(server.port, b"GET /readyz HTTP/1.0\r\n\r\n")
        assert _status(readyz) == 503 and readyz.endswith(b"no frame yet\n")
        assert _status(await _exchange(server.port, b"GET /nope HTTP/1.1\r\n\r\n")) == 404
        head = await _exchange(server.port, b"HEAD /healthz HTTP/1.1\r\n\r\n")
        assert _status(head) == 200 and head.endswith(b"\r\n\r\n") and b"Content-Length: 8\r\n" in head

    _run(test)


def test_other_methods_get_405() -> None:
    """The probe: POST/PUT/DELETE answered 200 like GET."""

    async def test(server: HttpServer) -> None:
        for method in (b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS"):
            response = await _exchange(
                server.port, method + b" /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
            )
            assert _status(response) == 405, method
            assert b"Allow: GET, HEAD\r\n" in response

    _run(test)


def test_oversized_request_line_gets_414_and_headers_431() -> None:
    """The probe: a request line over 64 KiB raised an unhandled ValueError (no answer)."""

    async def test(server: HttpServer) -> None:
        huge = b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n"
        assert _status(await _exchange(server.port, huge)) == 414
        assert _status(await _exchange(server.port, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n")) == 414
        long_header = b"GET /metrics HTTP/1.1\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n"
        assert _status(await _exchange(server.port, long_header)) == 431
        many = (
            b"GET /metrics HTTP/1.1\r\n"
            + b"".join(b"X-%d: %s\r\n" % (i, b"c" * 900) for i in range(60))
            + b"\r\n"
        )
        assert _status(await _exchange(server.port, many)) == 431
        assert _status(await _exchange(server.port, b"garbage\r\n\r\n")) == 400
        assert server.rejected.labels("bad_request")._value.get() == 5
        assert _status(await _exchange(server.port, b"GET /healthz HTTP/1.1\r\n\r\n")) == 200  # still serving

    _run(test)


async def _trickle(port: int, every: float, until: float) -> tuple[bytes, float]:
    """Send a request one header line at a time; (what came back, seconds until the server closed)."""
    start = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\n")
    received = b""
    try:
        while time.monotonic() - start < until:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), every)
            except TimeoutError:
                writer.write(b"X-Slow: yes\r\n")
                await writer.drain()
                continue
            received += chunk
            if not chunk:
                break
    except ConnectionError:
        pass
    finally:
        writer.close()
    return received, time.monotonic() - start


def test_a_trickling_client_is_cut_off_at_the_request_deadline() -> None:
    """The probe: the 5 s timeout was per line, so a header line every few seconds held the socket forever."""

    async def test(server: HttpServer) -> None:
        received, held_s = await _trickle(server.port, every=0.2, until=6.0)
        assert 0.9 < held_s < 3.0, held_s
        assert _status(received) == 408
        assert server.rejected.labels("timeout")._value.get() == 1

    _run(test, request_timeout_s=1.0)


def test_connection_cap_answers_503_and_trickling_clients_cannot_hold_it() -> None:
    """The probe: 200 trickling clients all held their sockets; now at most the cap, for the deadline."""

    async def test(server: HttpServer) -> None:
        peak = 0

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, server.serving)
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch())
        results = await asyncio.gather(*(_trickle(server.port, every=0.2, until=6.0) for _ in range(10)))
        watcher.cancel()
        statuses = sorted(_status(received) for received, _ in results)
        assert statuses == [408] * 8 + [503] * 2
        assert peak == 8
        assert max(held for _, held in results) < 3.5
        assert sorted(held for received, held in results if _status(received) == 503)[-1] < 1.0
        assert server.serving == 0
        assert _status(await _exchange(server.port, b"GET /healthz HTTP/1.1\r\n\r\n")) == 200
        assert server.rejected.labels("over_capacity")._value.get() == 2

    _run(test, max_connections=8, request_timeout_s=1.5)


_FD_LIMITED = """
import asyncio, logging, resource, sys
from prometheus_client import CollectorRegistry
from edgeinfer.app.http import HttpServer

logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(message)s")

async def main():
    server = HttpServer("127.0.0.1:0", CollectorRegistry(), lambda: (True, "ok"), lambda: (True, "ok"))
    await server.start()
    resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    print(server.port, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def test_accept_errors_at_the_fd_limit_are_logged_once_per_state_change() -> None:
    """The probe: at the fd limit every failed accept logged a traceback (33,864 lines in 15 s)."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_FD_LIMITED), "24"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    clients: list[socket.socket] = []
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        for _ in range(40):  # more than the server has descriptors for; fewer than its cap of 16 + free fds
            clients.append(socket.create_connection(("127.0.0.1", port)))
        time.sleep(3.0)  # out of descriptors all this time (the held clients send nothing)
        for client in clients:
            client.close()
        clients.clear()
        deadline = time.monotonic() + 15
        answer = b""
        while time.monotonic() < deadline and not answer.startswith(b"HTTP/1.1 200"):
            time.sleep(0.2)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
                try:
                    answer = sock.recv(1000)
                except OSError:
                    answer = b""
        assert answer.startswith(b"HTTP/1.1 200"), answer
        time.sleep(2.5)  # the recovery is logged after 2 s without a failed accept
    finally:
        for client in clients:
            client.close()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=10)
    log = err.decode()
    assert "Traceback" not in log, log[-3000:]
    assert log.count("cannot accept connections") == 1, log[-3000:]
    assert log.count("accepting connections again") == 1, log[-3000:]
    assert len(log.splitlines()) <= 4, log[-3000:]
