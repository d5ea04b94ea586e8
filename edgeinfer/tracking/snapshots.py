"""Track snapshots: each track's best-score frame as a JPEG with its box drawn, in ``data_dir/snapshots``.

``snapshots/{camera}/{track_id}.jpg``, written again when the track's best score improves (at most as
often as the track's ``update`` messages) and at its end. Encoding (a few ms per frame) runs on a thread
of its own, never on the pipeline's: the caller hands over the frame and goes on. At most
``MAX_PENDING`` writes wait; one more is dropped and counted. The directory is bounded: past
``max_bytes`` in all (and never more than a tenth of its partition), or older than the store's retention,
the oldest files go first.

Snapshots never take the room the local store needs (the store is the outbox; a snapshot is a nicety):
before each write the free space of the partition must stay above ``MIN_FREE_BYTES``; below it the
oldest snapshots are removed to give the room back, and if that is not enough the write is skipped and
counted. So a disk filled by something else empties the snapshot directory before the store runs short.

Reading (:meth:`SnapshotStore.read`, for ``GET /api/snapshots/{camera}/{track_id}.jpg``) accepts only a
camera name and a track id of the contract's shapes, so no request can name a path outside the directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

SNAPSHOT_DIR = "snapshots"  # in data_dir
URL_PREFIX = "/api/snapshots/"
MAX_PENDING = 16
JPEG_QUALITY = 85
CROP_MARGIN = 0.25  # of the box's size, on every side
MIN_FREE_BYTES = 8 * 2**20  # twice the store's largest WAL bound: its WAL and reserve can always grow
PARTITION_SHARE = 10  # the directory keeps at most 1/10 of its partition
_CAMERA = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_TRACK_ID = re.compile(r"[0-9]{1,12}-[0-9]{1,12}")


def snapshot_url(camera: str, track_id: str) -> str:
    return f"{URL_PREFIX}{camera}/{track_id}.jpg"


def render_snapshot(image: np.ndarray, box: np.ndarray, caption: str, *, crop: bool) -> bytes:
    """The JPEG: a copy of ``image`` with the box and caption drawn, or only the box's region."""
    x1, y1, x2, y2 = (round(v) for v in box.tolist())
    out = image.copy()
    cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), 2)
    cv2.putText(
        out, caption, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1, cv2.LINE_AA
    )
    if crop:
        mx, my = int((x2 - x1) * CROP_MARGIN) + 2, int((y2 - y1) * CROP_MARGIN) + 14
        h, w = out.shape[:2]
        out = out[max(0, y1 - my) : min(h, y2 + mx), max(0, x1 - mx) : min(w, x2 + mx)]
    ok, jpeg = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(jpeg.tobytes())


class SnapshotStore:
    """The snapshot directory: writes in the background, bounded by size and age, reads by name."""

    def __init__(self, directory: Path, *, max_bytes: int, retention_s: float) -> None:
        self.directory, self.max_bytes, self.retention_s = directory, max_bytes, retention_s
        self.dropped = 0  # writes given up: too many waiting
        self.skipped_low_space = 0  # writes given up: the partition is (nearly) full
        self.failed = 0  # writes that raised (disk full, ...)
        self.written = 0
        self._lock = threading.Lock()
        self._pending = 0
        self._files: OrderedDict[Path, tuple[int, float]] = OrderedDict()  # oldest first: size, mtime
        self._bytes = 0
        self._executor: ThreadPoolExecutor | None = None
        self._scanned = False

    # ----------------------------------------------------------------- writing (any thread)

    def submit(
        self,
        camera: str,
        track_id: str,
        image: np.ndarray,
        box: np.ndarray,
        caption: str,
        *,
        crop: bool = False,
    ) -> bool:
        """Queue a write of this track's snapshot; False if it was dropped (too many waiting)."""
        if self.max_bytes <= 0:
            return False
        with self._lock:
            if self._pending >= MAX_PENDING:
                self.dropped += 1
                return False
            self._pending += 1
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="edgeinfer.snapshots")
        self._executor.submit(self._write, camera, track_id, image, box.copy(), caption, crop)
        return True

    def _write(
        self, camera: str, track_id: str, image: np.ndarray, box: np.ndarray, caption: str, crop: bool
    ) -> None:
        try:
            jpeg = render_snapshot(image, box, caption, crop=crop)
            path = self.directory / camera / f"{track_id}.jpg"
            with self._lock:
                self._scan_once()
                if not self._make_room(len(jpeg)):
                    self.skipped_low_space += 1
                    return
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(jpeg)
            tmp.replace(path)  # a reader sees the old file or the new one, never half of one
            with self._lock:
                self._account(path, len(jpeg), time.time())
                self._enforce_bounds()
                self.written += 1
        except Exception as exc:  # a snapshot is never worth failing the pipeline for
            self.failed += 1
            if self.failed == 1 or self.failed % 100 == 0:
                logger.warning(
                    "snapshots: writing %s/%s failed (%d so far): %s", camera, track_id, self.failed, exc
                )
        finally:
            with self._lock:
                self._pending -= 1

    def _scan_once(self) -> None:
        """The files a previous run left, oldest first, so the bounds count them too."""
        if self._scanned:
            return
        self._scanned = True
        found = []
        for path in self.directory.glob("*/*.jpg"):
            try:
                st = path.stat()
            except OSError:
                continue
            found.append((st.st_mtime, path, st.st_size))
        for mtime, path, size in sorted(found):
            self._account(path, size, mtime)

    def _account(self, path: Path, size: int, mtime: float) -> None:
        old = self._files.pop(path, None)
        if old is not None:
            self._bytes -= old[0]
        self._files[path] = (size, mtime)
        self._bytes += size

    def _enforce_bounds(self) -> None:
        cutoff = time.time() - self.retention_s
        cap = min(self.max_bytes, _partition_bytes(self.directory) // PARTITION_SHARE)
        while self._files:
            _, (_, mtime) = next(iter(self._files.items()))
            if self._bytes <= cap and mtime >= cutoff:
                break
            self._remove_oldest()

    def _make_room(self, size: int) -> bool:
        """Free space for ``size`` more bytes above MIN_FREE_BYTES, removing the oldest snapshots if need be."""
        while _free_bytes(self.directory) - size < MIN_FREE_BYTES:
            if not self._files:
                return False
            self._remove_oldest()
        return True

    def _remove_oldest(self) -> None:
        path, (size, _) = self._files.popitem(last=False)
        self._bytes -= size
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued write is done (tests, shutdown); False if some still wait."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    return True
            time.sleep(0.005)
        return False

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    # ----------------------------------------------------------------- reading

    def read(self, camera: str, track_id: str) -> bytes | None:
        """The JPEG of ``camera``'s track ``track_id``, or None (unknown names, no such file)."""
        if not _CAMERA.fullmatch(camera) or not _TRACK_ID.fullmatch(track_id):
            return None
        try:
            return (self.directory / camera / f"{track_id}.jpg").read_bytes()
        except OSError:
            return None


def _existing(directory: Path) -> Path:
    while not directory.exists() and directory.parent != directory:
        directory = directory.parent
    return directory


def _free_bytes(directory: Path) -> int:
    """Bytes this process may still write on the partition of ``directory`` (0 if unknown)."""
    try:
        st = os.statvfs(_existing(directory))
    except OSError:
        return 0
    return int(st.f_bavail * st.f_frsize)


def _partition_bytes(directory: Path) -> int:
    try:
        st = os.statvfs(_existing(directory))
    except OSError:
        return 0
    return int(st.f_blocks * st.f_frsize)


def parse_snapshot_path(path: str) -> tuple[str, str] | None:
    """``/api/snapshots/{camera}/{track_id}.jpg`` -> (camera, track_id), or None for any other path."""
    if not path.startswith(URL_PREFIX) or not path.endswith(".jpg"):
        return None
    rest = path[len(URL_PREFIX) : -len(".jpg")]
    camera, sep, track_id = rest.partition("/")
    if not sep or not _CAMERA.fullmatch(camera) or not _TRACK_ID.fullmatch(track_id):
        return None
    return camera, track_id
