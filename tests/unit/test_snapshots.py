"""Track snapshots: the JPEG on disk, the directory's size and age bounds, and serving them over HTTP
(real sockets on 127.0.0.1) with no way to name a path outside the directory."""

from __future__ import annotations

import asyncio
import os
import time

import cv2
import numpy as np
from prometheus_client import CollectorRegistry

from edgeinfer.app.http import HttpServer
from edgeinfer.app.web import snapshot_route
from edgeinfer.tracking.snapshots import SnapshotStore, parse_snapshot_path, render_snapshot

IMAGE = np.random.default_rng(1).integers(0, 255, (240, 320, 3), dtype=np.uint8)
BOX = np.array([100, 60, 180, 140], np.float32)


def test_render_draws_the_box_and_crop_keeps_its_region():
    full = cv2.imdecode(np.frombuffer(render_snapshot(IMAGE, BOX, "circle 0.91", crop=False), np.uint8), 1)
    assert full.shape == IMAGE.shape
    assert full[100, 100, 1] > 200 and full[100, 100, 0] < 80  # the green frame of the box, left edge
    crop = cv2.imdecode(np.frombuffer(render_snapshot(IMAGE, BOX, "circle 0.91", crop=True), np.uint8), 1)
    assert crop.shape[0] < 140 and crop.shape[1] < 140 and crop.shape[0] > 80


def test_the_size_cap_removes_the_oldest_files_first(tmp_path):
    one = len(render_snapshot(IMAGE, BOX, "x", crop=False))
    store = SnapshotStore(tmp_path, max_bytes=int(one * 3.5), retention_s=3600)
    for n in range(1, 7):
        assert store.submit("cam", f"1-{n}", IMAGE, BOX, "x")
        assert store.flush()
    store.close()
    assert sorted(p.name for p in (tmp_path / "cam").glob("*.jpg")) == ["1-4.jpg", "1-5.jpg", "1-6.jpg"]
    assert store.used_bytes <= store.max_bytes


def test_files_of_a_previous_run_count_and_age_out_by_retention(tmp_path):
    old = tmp_path / "cam" / "1-1.jpg"
    old.parent.mkdir()
    old.write_bytes(b"\xff\xd8old")
    past = time.time() - 7200
    os.utime(old, (past, past))
    store = SnapshotStore(tmp_path, max_bytes=2**20, retention_s=3600)
    store.submit("cam", "2-1", IMAGE, BOX, "x")
    assert store.flush()
    store.close()
    assert not old.exists() and (tmp_path / "cam" / "2-1.jpg").exists()


def test_paths_are_parsed_strictly():
    assert parse_snapshot_path("/api/snapshots/dock/3-17.jpg") == ("dock", "3-17")
    for bad in (
        "/api/snapshots/dock/3-17.png",
        "/api/snapshots/../3-17.jpg",
        "/api/snapshots/dock/../../etc/passwd.jpg",
        "/api/snapshots/dock/3-17/x.jpg",
        "/api/snapshots/.dock/3-17.jpg",
        "/api/snapshots/dock/abc.jpg",
    ):
        assert parse_snapshot_path(bad) is None, bad


def test_http_serves_a_snapshot_and_404s_the_rest(tmp_path):
    store = SnapshotStore(tmp_path, max_bytes=2**20, retention_s=3600)
    store.submit("dock", "3-17", IMAGE, BOX, "circle 0.9")
    assert store.flush()
    (tmp_path / "secret.jpg").write_bytes(b"not for you")

    async def exchange(port: int, path: str, method: str = "GET") -> tuple[int, bytes, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"{method} {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 5.0)
        writer.close()
        head, _, body = response.partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), head, body

    async def main() -> None:
        server = HttpServer(
            "127.0.0.1:0",
            CollectorRegistry(),
            lambda: (True, ""),
            lambda: (True, ""),
            routes=[snapshot_route(store)],
        )
        await server.start()
        try:
            status, head, body = await exchange(server.port, "/api/snapshots/dock/3-17.jpg")
            assert status == 200 and b"Content-Type: image/jpeg" in head
            assert body == (tmp_path / "dock" / "3-17.jpg").read_bytes()
            status, head, body = await exchange(server.port, "/api/snapshots/dock/3-17.jpg", "HEAD")
            assert status == 200 and body == b""
            assert (await exchange(server.port, "/api/snapshots/dock/3-18.jpg"))[0] == 404
            assert (await exchange(server.port, "/api/snapshots/dock/../secret.jpg"))[0] == 404
            assert (await exchange(server.port, "/api/snapshots/dock/3-17.jpg", "POST"))[0] == 405
            assert (await exchange(server.port, "/healthz"))[0] == 200
        finally:
            await server.close()

    asyncio.run(main())
    store.close()


def test_a_nearly_full_partition_gives_snapshot_room_back_to_the_store(tmp_path, monkeypatch):
    from edgeinfer.tracking import snapshots as module

    store = SnapshotStore(tmp_path, max_bytes=2**30, retention_s=3600)
    for n in (1, 2):
        store.submit("cam", f"1-{n}", IMAGE, BOX, "x")
        assert store.flush()
    # the free space the partition reports (statvfs): something else filled the disk
    monkeypatch.setattr(module, "_free_bytes", lambda _d: module.MIN_FREE_BYTES - 1)
    store.submit("cam", "1-3", IMAGE, BOX, "x")
    assert store.flush()
    store.close()
    assert list((tmp_path / "cam").glob("*.jpg")) == []  # the old ones went, the new one was skipped
    assert store.skipped_low_space == 1 and store.used_bytes == 0
