"""The live view's hub: each camera's latest frame and detections, and the JPEGs for whoever watches.

The pipeline hands every processed frame to :meth:`LiveHub.publish` on the event loop: a reference swap
and a counter, no copy and no encode, whether or not anybody watches. Encoding happens only while a
camera has viewers (MJPEG streams) or somebody asks for its latest frame:

- one producer task per watched camera encodes the newest frame at most ``fps`` times a second, on the
  hub's own encoder thread, and offers the JPEG to every viewer of that camera: one encode per frame for
  all of them;
- a viewer holds one JPEG not yet sent; a newer one replaces it (counted as dropped), so a viewer that
  reads slowly (or not at all) costs one frame of memory, not a queue;
- the producer stops when the last viewer leaves; ``latest.jpg`` reuses the newest JPEG when no newer
  frame came since, and encodes it once otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from edgeinfer.app.liveview import Overlay, render_jpeg
from edgeinfer.detect.detections import Detections
from edgeinfer.sources.frame import Frame

logger = logging.getLogger(__name__)

Renderer = Callable[[Frame, Detections, Overlay], bytes]


class Viewer:
    """One watcher of one camera: the newest JPEG not yet taken (a newer one replaces it)."""

    def __init__(self, camera: str) -> None:
        self.camera = camera
        self._jpeg: bytes | None = None
        self._ready = asyncio.Event()
        self.offered = 0
        self.dropped = 0  # replaced before this viewer took them: it read slower than the live rate

    def offer(self, jpeg: bytes) -> None:
        if self._jpeg is not None:
            self.dropped += 1
        self._jpeg = jpeg
        self.offered += 1
        self._ready.set()

    async def next(self) -> bytes:
        """The next JPEG to send (waits for one)."""
        await self._ready.wait()
        self._ready.clear()
        jpeg, self._jpeg = self._jpeg, None
        assert jpeg is not None
        return jpeg


class _Camera:
    def __init__(self, name: str, overlay: Overlay) -> None:
        self.name, self.overlay = name, overlay
        self.latest: tuple[Frame, Detections] | None = None
        self.version = 0  # frames published
        self.jpeg: bytes | None = None
        self.jpeg_version = 0  # the version self.jpeg shows
        self.lock = asyncio.Lock()
        self.fresh = asyncio.Event()  # a frame came since the producer last encoded
        self.viewers: set[Viewer] = set()
        self.producer: asyncio.Task[None] | None = None


class LiveHub:
    """Per camera: the latest frame and its detections, and the encoders for its viewers."""

    def __init__(
        self,
        cameras: Sequence[Any],
        labels: list[str],
        *,
        fps: float = 5.0,
        width: int = 640,
        render: Renderer | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fps, self.width, self._clock = fps, width, clock
        self._labels = labels
        self._render = render or self._render_jpeg
        self._cameras = {c.name: _Camera(c.name, Overlay.of(c)) for c in cameras}
        self._executor: ThreadPoolExecutor | None = None
        self.encodes = 0
        self._encode_failures = 0
        self._encodes_metric = Counter(
            "edgeinfer_live_encodes",
            "JPEGs encoded for the live page (only while somebody watches)",
            ["camera"],
            registry=registry,
        )
        self._viewers_metric = Gauge(
            "edgeinfer_live_viewers", "Live streams open now", ["camera"], registry=registry
        )

    def __contains__(self, camera: str) -> bool:
        return camera in self._cameras

    @property
    def cameras(self) -> list[str]:
        return list(self._cameras)

    # ---------------------------------------------------------------- the pipeline's side (hot path)

    def publish(self, frame: Frame, dets: Detections) -> None:
        """A processed frame (on the event loop): keep references; wake the producer if one runs."""
        camera = self._cameras.get(frame.camera)
        if camera is None:
            return
        camera.latest = (frame, dets)
        camera.version += 1
        if camera.viewers:
            camera.fresh.set()

    # ---------------------------------------------------------------- the viewers' side

    def viewers(self, camera: str) -> int:
        return len(self._cameras[camera].viewers)

    @contextlib.contextmanager
    def watch(self, camera: str) -> Iterator[Viewer]:
        """A viewer of ``camera`` for as long as the block runs; the first one starts its producer, the
        last one to leave stops it."""
        state = self._cameras[camera]
        viewer = Viewer(camera)
        state.viewers.add(viewer)
        self._viewers_metric.labels(camera).inc()
        if state.producer is None:
            state.fresh.set()  # start with the frame there is, if any
            state.producer = asyncio.create_task(self._produce(state), name=f"edgeinfer[{camera}].live")
        try:
            yield viewer
        finally:
            state.viewers.discard(viewer)
            self._viewers_metric.labels(camera).dec()
            if not state.viewers and state.producer is not None:
                state.producer.cancel()
                state.producer = None

    async def latest_jpeg(self, camera: str) -> bytes | None:
        """The newest frame, annotated (None before the camera's first processed frame)."""
        return await self._encode(self._cameras[camera])

    async def close(self) -> None:
        producers = [c.producer for c in self._cameras.values() if c.producer is not None]
        for task in producers:
            task.cancel()
        await asyncio.gather(*producers, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    # ---------------------------------------------------------------- encoding

    async def _produce(self, state: _Camera) -> None:
        period = 1.0 / self.fps
        while True:
            await state.fresh.wait()
            state.fresh.clear()
            started = self._clock()
            jpeg = await self._encode(state)
            if jpeg is not None:
                for viewer in list(state.viewers):
                    viewer.offer(jpeg)
            await asyncio.sleep(max(0.0, period - (self._clock() - started)))

    async def _encode(self, state: _Camera) -> bytes | None:
        """The JPEG of the newest frame: encoded at most once per frame, whoever asks."""
        async with state.lock:
            latest, version = state.latest, state.version
            if latest is None or state.jpeg_version == version:
                return state.jpeg
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="edgeinfer.live")
            frame, dets = latest
            loop = asyncio.get_running_loop()
            try:
                jpeg = await loop.run_in_executor(self._executor, self._render, frame, dets, state.overlay)
            except Exception:
                self._encode_failures += 1
                if self._encode_failures == 1 or self._encode_failures % 1000 == 0:
                    logger.exception("live view: cannot encode a frame of %s", state.name)
                return state.jpeg
            state.jpeg, state.jpeg_version = jpeg, version
            self.encodes += 1
            self._encodes_metric.labels(state.name).inc()
            return jpeg

    def _render_jpeg(self, frame: Frame, dets: Detections, overlay: Overlay) -> bytes:
        return render_jpeg(frame.image, dets, self._labels, overlay, width=self.width)
