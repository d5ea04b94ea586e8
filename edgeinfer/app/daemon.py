"""Assembly and lifecycle of ``edgeinfer run``: build every component once, run them, shut down in order.

Shutdown path (first SIGINT/SIGTERM, --duration, --max-frames, or every source ended):
stop capture -> finish the batch in flight -> flush outcomes to the store -> let the outputs drain and
say goodbye -> close the store. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

from edgeinfer.app.http import HttpServer
from edgeinfer.app.metrics import Metrics
from edgeinfer.app.outputs import build_outputs
from edgeinfer.config import Config
from edgeinfer.detect.build import open_detector
from edgeinfer.detect.detector import Detector
from edgeinfer.pipeline.pipeline import Pipeline
from edgeinfer.sinks.mqtt_publisher import MQTTPublisher
from edgeinfer.store.sqlite import STORE_FILE, AsyncStore, Store
from edgeinfer.store.writer import StoreWriter

logger = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 3.0
PRUNE_INTERVAL_S = 30.0


@dataclass
class RunSummary:
    frames: int
    events: int
    seconds: float
    first_event_s: float | None


def open_store(config: Config) -> Store:
    return Store(
        config.data_dir / STORE_FILE, max_bytes=config.storage.max_bytes, retention_s=config.storage.retention
    )


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        detector: Detector | None = None,
        metrics: Metrics | None = None,
        duration: float | None = None,
        max_frames: int | None = None,
        status_interval: float = 5.0,
    ) -> None:
        self.config = config
        self.duration, self.status_interval = duration, status_interval
        self.detector = detector or open_detector(config.detector)
        self.metrics = metrics or Metrics()
        self.store = AsyncStore(open_store(config))
        self.writer = StoreWriter(self.store, self.metrics)
        self.outputs: Any = None
        self.pipeline = Pipeline(
            config,
            self.detector,
            self.metrics,
            self.writer.submit,
            context=self._context,
            max_frames=max_frames,
        )
        self.stop = asyncio.Event()
        self.http: HttpServer | None = None
        self._signals = 0

    def _context(self, series: list[str]) -> dict[str, Any]:
        if self.outputs is None:
            return {}
        return {s: v for s in series if (v := self.outputs.context.latest(s)) is not None}

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals > 1:
            logger.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(1)
        logger.info("%s: stopping (again to exit at once)", signal.Signals(signum).name)
        self.stop.set()

    async def run(self) -> RunSummary:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not in the main thread (tests)
                loop.add_signal_handler(sig, self._on_signal, sig)
        self.outputs = build_outputs(
            self.config, self.store, self.metrics.registry, self.stats, self.pipeline.trigger
        )
        self.writer.on_commit = [c.wake for c in self.outputs.components if isinstance(c, MQTTPublisher)]
        http = None
        if self.config.http.enabled:
            http = HttpServer(
                self.config.http.listen, self.metrics.registry, self.pipeline.healthy, self.pipeline.ready
            )
            await http.start()
        self.http = http
        started = time.monotonic()
        outputs_stop = asyncio.Event()
        writer_task = asyncio.create_task(self.writer.run(), name="edgeinfer.store.sqlite-writer")
        output_tasks = [
            asyncio.create_task(c.run(outputs_stop), name=f"edgeinfer.{c.name}")
            for c in self.outputs.components
        ]
        aux = [
            asyncio.create_task(self._status_loop(), name="edgeinfer.status"),
            asyncio.create_task(self._prune_loop(), name="edgeinfer.prune"),
        ]
        if self.duration is not None:
            aux.append(asyncio.create_task(self._stop_after(self.duration), name="edgeinfer.duration"))
        logger.info(
            "running: %d camera(s), model %s (%s), data in %s",
            len(self.config.cameras),
            self.detector.info.name,
            self.detector.info.backend,
            self.config.data_dir,
        )
        try:
            await self.pipeline.run(self.stop)
        finally:
            await self.writer.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(writer_task, DRAIN_TIMEOUT_S)
            outputs_stop.set()
            if output_tasks:
                _, pending = await asyncio.wait(output_tasks, timeout=DRAIN_TIMEOUT_S)
                for task in pending:
                    task.cancel()
                if pending:
                    logger.warning(
                        "%d output(s) did not finish in %.0f s; the store keeps their backlog",
                        len(pending),
                        DRAIN_TIMEOUT_S,
                    )
            for task in aux:
                task.cancel()
            await asyncio.gather(*aux, return_exceptions=True)
            if http is not None:
                await http.close()
            await asyncio.to_thread(self.store.close)
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
        elapsed = time.monotonic() - started
        logger.info(
            "stopped after %.1f s: %d frames, %d events",
            elapsed,
            self.pipeline.frames_total,
            self.writer.events_written,
        )
        return RunSummary(
            self.pipeline.frames_total, self.writer.events_written, elapsed, self.pipeline.first_event_s
        )

    def stats(self) -> dict[str, Any]:
        return self.pipeline.stats()

    async def _stop_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.stop.set()

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.status_interval)
            stats = self.pipeline.stats()
            fps = stats["fps"]
            e2e = stats["latency_ms"]
            dropped = sum(stats["drops"].values())
            logger.info(
                "fps %s | batch %.2f | e2e p50 %.1f ms p99 %.1f ms | dropped %d | events %d",
                " ".join(f"{n}={v:.1f}" for n, v in fps.items()),
                stats["batch_size_mean"],
                e2e.get("p50", 0.0),
                e2e.get("p99", 0.0),
                dropped,
                self.writer.events_written,
            )
            for name, capture in self.pipeline.captures.items():
                self.metrics.camera_up.labels(name).set(1 if capture.state == "running" else 0)

    async def _prune_loop(self) -> None:
        store = self.store.store
        while True:
            try:
                result = await self.store.run(store.prune)
                if result.deleted:
                    self.metrics.store_pruned.labels("false").inc(result.deleted - result.undelivered)
                    self.metrics.store_pruned.labels("true").inc(result.undelivered)
                    logger.warning(
                        "local store: pruned %d rows (%d never delivered) to stay within bounds",
                        result.deleted,
                        result.undelivered,
                    )
                self.metrics.store_bytes.set(await self.store.run(store.size_bytes))
            except Exception:
                self.metrics.errors.labels("store").inc()
                logger.exception("local store: pruning failed")
            await asyncio.sleep(PRUNE_INTERVAL_S)
