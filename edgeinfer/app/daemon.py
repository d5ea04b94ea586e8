"""Assembly and lifecycle of ``edgeinfer run``: build every component once, run them, shut down in order.

One shutdown path, whatever starts it (first SIGINT/SIGTERM, --duration, --max-frames, every source ended):
stop capture -> finish the batch in flight -> flush outcomes to the store -> let the outputs drain and
say goodbye -> close the store. Each drain step has a deadline; what misses it is counted (a metric and one
log line) and stays in the store for the next start. Resources sit in an ``AsyncExitStack`` so a failure
at any step of start-up releases what was acquired before it; tasks run, named, in one ``TaskGroup``.

A second signal forces the exit the way uvicorn does: the drain deadlines end at once, tasks are cancelled,
the store still closes cleanly. A third signal ends the process immediately (a thread stuck in a driver).

SIGHUP (with a ``reload`` loader) reads the config again: an invalid one is logged, one line per problem,
and the daemon keeps running; a valid one that differs is logged key by key and stops the daemon through
the same shutdown path with :attr:`Daemon.reload_to` set, for :func:`edgeinfer.app.reload.serve` to run
again on it in the same process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from edgeinfer.aio import wait_any
from edgeinfer.app.http import HttpServer
from edgeinfer.app.livehub import LiveHub
from edgeinfer.app.metrics import Metrics
from edgeinfer.app.outputs import build_outputs
from edgeinfer.app.stats import ReportsState, SinkState, status_line
from edgeinfer.config import Config
from edgeinfer.detect.detector import Detector
from edgeinfer.detect.pool import DetectorPool, open_pool
from edgeinfer.errors import ConfigError, EdgeInferError
from edgeinfer.pipeline.cameras import CameraCollector
from edgeinfer.pipeline.pipeline import Pipeline
from edgeinfer.pipeline.priority import instance_nice
from edgeinfer.sinks.mqtt_publisher import MQTTPublisher
from edgeinfer.store.sqlite import STORE_FILE, AsyncStore, Store
from edgeinfer.store.writer import StoreWriter
from edgeinfer.tracking import decoder_conf
from edgeinfer.tracking.snapshots import SNAPSHOT_DIR, SnapshotStore

logger = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 3.0
PRUNE_INTERVAL_S = 30.0
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class RunSummary:
    frames: int
    events: int
    seconds: float
    first_event_s: float | None
    unfinished: int = 0  # outcomes and outputs the drain could not finish by its deadline


def open_store(config: Config) -> Store:
    return Store(
        config.data_dir / STORE_FILE, max_bytes=config.storage.max_bytes, retention_s=config.storage.retention
    )


class Daemon:
    def __init__(
        self,
        config: Config,
        *,
        detector: Detector | DetectorPool | None = None,
        metrics: Metrics | None = None,
        duration: float | None = None,
        max_frames: int | None = None,
        status_interval: float = 5.0,
        reload: Callable[[], Config] | None = None,
        handle_signals: bool = True,
    ) -> None:
        self.config = config
        self._reload, self._handle_signals = reload, handle_signals
        self.reload_to: Config | None = None  # set by a valid SIGHUP reload: run again on this config
        self.duration, self.status_interval = duration, status_interval
        # the decoder keeps the low-score boxes the trackers' second stage needs; events still start at conf
        self.detector = detector or open_pool(
            config.detector.model_copy(update={"conf": decoder_conf(config)}),
            max_batch=config.batching.max_batch_size,
            data_dir=config.data_dir,
        )
        if isinstance(self.detector, DetectorPool):
            logger.info("detector: %s", self.detector.choice.describe())
        self.metrics = metrics or Metrics()
        self.store = AsyncStore(open_store(config))
        self.writer = StoreWriter(self.store, self.metrics)
        self.outputs: Any = None
        http = config.http
        self.live = (  # the live page's frames: references only, encoded while somebody watches
            LiveHub(
                config.cameras,
                self.detector.labels,
                fps=http.live_fps,
                width=http.live_width,
                registry=self.metrics.registry,
            )
            if http.enabled
            else None
        )
        self.snapshots = SnapshotStore(
            config.data_dir / SNAPSHOT_DIR,
            max_bytes=config.storage.snapshots_max_bytes,
            retention_s=config.storage.retention,
        )
        pool = self.detector if isinstance(self.detector, DetectorPool) else None
        self.pipeline = Pipeline(
            config,
            self.detector,
            self.metrics,
            self.writer.submit,
            context=self._context,
            max_frames=max_frames,
            seq_start=self.store.store.next_seqs(),  # event seqs continue after the stored ones
            instances=pool.instances if pool else None,
            max_batch_size=pool.choice.batch if pool else None,
            nice=instance_nice(config.detector.nice, pool.choice.threads if pool else None),
            on_result=None if self.live is None else self.live.publish,
            track_prefix=str(self.store.store.next_boot()),  # track ids: unique across restarts too
            snapshots=self.snapshots,
        )
        self.metrics.registry.register(CameraCollector(self.pipeline.cameras))  # camera state, restarts
        self.stop = asyncio.Event()
        self.force_exit = asyncio.Event()  # second signal: drains end at once
        self.http: HttpServer | None = None
        self._signals = 0

    def _context(self, series: list[str]) -> dict[str, Any]:
        if self.outputs is None:
            return {}
        return {s: v for s in series if (v := self.outputs.context.latest(s)) is not None}

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGHUP:
            self.reload()
            return
        if self.reload_to is not None:  # a stop signal wins over a reload under way
            self.reload_to = None
            self._say_offline(True)
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals == 1:
            logger.info("%s: stopping (again to skip the drain)", name)
            self.stop.set()
        elif self._signals == 2:
            logger.warning("second %s: skipping the drain (again to exit at once)", name)
            self.stop.set()
            self.force_exit.set()
        else:
            logger.warning("third %s: exiting now", name)
            os._exit(1)

    def reload(self) -> None:
        """SIGHUP: load and validate the config again; if it is valid and differs, stop for a restart on it."""
        from edgeinfer.app.reload import config_changes, keeps_status_topic

        if self._reload is None:
            logger.warning("SIGHUP: no config to reload; ignored")
            return
        if self.stop.is_set():
            logger.warning("SIGHUP: already stopping; ignored")
            return
        try:
            new = self._reload()
        except ConfigError as exc:
            logger.error("reload: the config is invalid; still running on the previous one:")
            for line in str(exc).splitlines():
                logger.error("reload:   %s", line)
            return
        changes = config_changes(self.config, new)
        if not changes:
            logger.info("reload: the config is valid and unchanged; nothing to do")
            return
        logger.info("reload: the config is valid; %d change(s):", len(changes))
        for change in changes:
            logger.info("reload:   %s", change)
        logger.info("reload: restarting the pipeline and outputs on the new config")
        if keeps_status_topic(self.config, new):
            self._say_offline(False)  # the next run says `online` on the same topic
        self.reload_to = new
        self.stop.set()

    def _say_offline(self, say: bool) -> None:
        for component in self.outputs.components if self.outputs is not None else ():
            if isinstance(component, MQTTPublisher):
                component.say_offline = say

    @contextlib.contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        installed = []
        signals: tuple[signal.Signals, ...] = _SIGNALS if self._handle_signals else ()
        if signals and self._reload is not None:
            signals = (*signals, signal.SIGHUP)
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not in the main thread (tests)
                loop.add_signal_handler(sig, self._on_signal, sig)
                installed.append(sig)
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    async def _within_deadline(self, awaitable: Awaitable[Any], what: str) -> bool:
        """Await ``awaitable`` until the drain deadline or a forced exit; True if it finished in time."""
        task = asyncio.ensure_future(awaitable)
        await wait_any(self.force_exit, _done_event(task), within=DRAIN_TIMEOUT_S)
        if task.done():
            task.result()  # a failure in the drain itself is a bug: let it surface
            return True
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        logger.warning("shutdown: %s did not finish %s", what, _why_unfinished(self.force_exit))
        return False

    async def run(self) -> RunSummary:
        started = time.monotonic()
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(asyncio.to_thread, self.store.close)
            stack.callback(self.snapshots.close)
            stack.enter_context(self._signal_handlers())
            self.outputs = build_outputs(
                self.config,
                self.store,
                self.metrics.registry,
                self.stats,
                self.pipeline.trigger,
                labels=self.detector.labels,
                model=self.detector.info.name,
            )
            self.writer.on_commit = [c.wake for c in self.outputs.components if isinstance(c, MQTTPublisher)]
            if self.config.http.enabled:
                await self._start_http(stack)
            logger.info(
                "running: %d camera(s), model %s (%s), data in %s",
                len(self.config.cameras),
                self.detector.info.name,
                self.detector.info.backend,
                self.config.data_dir,
            )
            unfinished = await self._run_tasks()
        elapsed = time.monotonic() - started
        logger.info(
            "stopped after %.1f s: %d frames, %d events",
            elapsed,
            self.pipeline.frames_total,
            self.writer.events_written,
        )
        return RunSummary(
            self.pipeline.frames_total,
            self.writer.events_written,
            elapsed,
            self.pipeline.first_event_s,
            unfinished,
        )

    async def _run_tasks(self) -> int:
        """Run every component in one TaskGroup until the pipeline stops, then drain; returns what was left."""
        outputs_stop = asyncio.Event()
        try:
            return await self._supervise(outputs_stop)
        except BaseExceptionGroup as group:
            # A component that stops with a user-facing error (EdgeInferError) is reported as that error,
            # not as a traceback of the task group; anything else is a bug and surfaces whole.
            errors = group.subgroup(EdgeInferError)
            if errors is not None and len(errors.exceptions) == 1 and errors is group:
                raise errors.exceptions[0] from None
            raise

    async def _supervise(self, outputs_stop: asyncio.Event) -> int:
        assert self.outputs is not None
        async with asyncio.TaskGroup() as tg:
            writer = tg.create_task(self.writer.run(), name="edgeinfer.store-writer")
            outputs = [
                tg.create_task(c.run(outputs_stop), name=f"edgeinfer.{c.name}")
                for c in self.outputs.components
            ]
            aux = [
                tg.create_task(self._status_loop(), name="edgeinfer.status"),
                tg.create_task(self._prune_loop(), name="edgeinfer.prune"),
            ]
            if self.duration is not None:
                aux.append(tg.create_task(self._stop_after(self.duration), name="edgeinfer.duration"))
            pipeline = tg.create_task(self.pipeline.run(self.stop), name="edgeinfer.pipeline")
            await wait_any(_done_event(pipeline), self.force_exit)
            if not pipeline.done():
                pipeline.cancel()
            elif not pipeline.cancelled() and pipeline.exception() is None:
                # every frame is in: the tracks still alive end (and counts go to zero), stored like the rest
                ended = self.pipeline.builder.finish()
                if ended:
                    await self.writer.submit(ended)
            unfinished = await self._drain(writer, outputs, outputs_stop)
            for task in aux:
                task.cancel()
        return unfinished

    async def _drain(
        self, writer: asyncio.Task[None], outputs: list[asyncio.Task[None]], outputs_stop: asyncio.Event
    ) -> int:
        """Flush outcomes to the store, then let the outputs send what they can; count what misses the deadline."""
        unfinished = 0
        left = await self.writer.close(DRAIN_TIMEOUT_S, abandon=self.force_exit)
        if left:
            unfinished += left
            self.metrics.drain_unfinished.labels("outcomes").inc(left)
        if not writer.done():
            writer.cancel()
        outputs_stop.set()
        if outputs:
            pending = [t for t in outputs if not t.done()]
            if pending and not await self._within_deadline(
                asyncio.wait(pending), f"{len(pending)} output(s)"
            ):
                late = [t for t in pending if not t.done()]
                for task in late:
                    task.cancel()
                unfinished += len(late)
                self.metrics.drain_unfinished.labels("outputs").inc(len(late))
                logger.warning(
                    "shutdown: the store keeps the backlog of %s", ", ".join(t.get_name() for t in late)
                )
        return unfinished

    async def _start_http(self, stack: contextlib.AsyncExitStack) -> None:
        from edgeinfer.app.auth import insecure_listen_warning
        from edgeinfer.app.web import StoreEvents, WebApi, snapshot_route

        assert self.live is not None
        cfg = self.config.http
        auth = None
        if cfg.username is not None and cfg.password is not None:
            from edgeinfer.app.auth import BasicAuth

            auth = BasicAuth(cfg.username, cfg.password)
        events = StoreEvents(self.store.store.path)
        stack.push_async_callback(events.close)
        stack.push_async_callback(self.live.close)
        web = WebApi(self.live, self.web_status, events.read)
        http = HttpServer(
            cfg.listen,
            self.metrics.registry,
            self.healthy,
            self.ready,
            routes=[*web.routes(), snapshot_route(self.snapshots)],
            auth=auth,
        )
        await http.start()
        stack.push_async_callback(http.close)
        self.http = http
        warning = insecure_listen_warning(http.host, auth is not None)
        if warning:
            logger.warning("%s", warning)

    async def web_status(self) -> dict[str, Any]:
        """/api/status: the stats snapshot, plus what the page shows beside it."""
        from edgeinfer.app.webstatus import status_document

        return status_document(
            self.config,
            self.stats(),
            self.pipeline.cameras.health(),
            self.metrics.camera_e2e,
            await self._sink_states(),
            detector=self.detector.info,
            events=self.writer.events_written,
            instances=len(self.pipeline.stages.instances),
            threads=self.detector.choice.threads if isinstance(self.detector, DetectorPool) else None,
            max_batch_size=self.pipeline.batcher.policy.max_batch_size,
        )

    def stats(self) -> dict[str, Any]:
        return self.metrics.stats(self.pipeline.status()).to_json()

    def healthy(self) -> tuple[bool, str]:
        """/healthz: the pipeline makes progress and the store takes what it produces."""
        if self.writer.failing:
            return False, f"store failing: {self.writer.unstored()} outcome(s) held in memory"
        return self.pipeline.healthy()

    def ready(self) -> tuple[bool, str]:
        ok, why = self.pipeline.ready()
        if self.writer.failing:
            return False, f"{why}; store failing"
        return ok, why

    async def _stop_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self.stop.set()

    async def _sink_states(self) -> list[SinkState]:
        """Each output's connection and store backlog (refreshing its backlog gauge)."""
        states = []
        for component in self.outputs.components if self.outputs is not None else ():
            if isinstance(component, ReportsState):
                backlog: int | None = None
                try:
                    backlog = await component.count_backlog()
                except Exception as exc:  # the store failing is reported by the writer and /healthz
                    logger.debug("status: backlog of %s not counted: %s", component.sink, exc)
                states.append(SinkState(component.sink, component.connected, backlog))
        return states

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.status_interval)
            for name, up in self.pipeline.cameras.up().items():  # a frozen camera is not up
                self.metrics.camera_up.labels(name).set(1 if up else 0)
            sinks = await self._sink_states()
            stats = self.metrics.stats(self.pipeline.status())
            logger.info("%s", status_line(stats, sinks, self.writer.events_written))

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


def _done_event(task: asyncio.Future[Any]) -> asyncio.Event:
    event = asyncio.Event()
    task.add_done_callback(lambda _: event.set())
    return event


def _why_unfinished(force_exit: asyncio.Event) -> str:
    return "(exit forced)" if force_exit.is_set() else f"within {DRAIN_TIMEOUT_S:.0f} s"
