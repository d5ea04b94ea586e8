"""``edgeinfer run`` as a loop: run a :class:`~edgeinfer.app.daemon.Daemon` until it stops; when it stopped
for a SIGHUP reload, run a new one on the new config, in the same process.

A reload is a restart in-process, not a hot patch: the old daemon goes through its one shutdown path (the
batch in flight finishes, outcomes are flushed, the outputs drain, the store closes), then a new one is
built from the new config. The detector is kept when ``detector:`` did not change; MQTT's retained
``online`` status stays as it is when the status topic and broker do not change (no ``offline`` in
between); counters start from 0 again (a counter reset, as after a restart). A new config that validates
but cannot start (a model file that is not there, a port in use) is logged and the previous config runs
again.

This module owns the process's signal handlers while it runs and hands each signal to the running daemon
(``Daemon._on_signal``: first stops, second skips the drain, third exits; SIGHUP reloads). Between two
runs a SIGINT/SIGTERM means "do not start the next one" and SIGHUP is ignored with a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

from edgeinfer.app.daemon import Daemon, RunSummary
from edgeinfer.config import Config, format_path
from edgeinfer.detect.detector import Detector
from edgeinfer.detect.pool import DetectorPool
from edgeinfer.errors import EdgeInferError

logger = logging.getLogger(__name__)

_SECRETS = frozenset({"password", "token"})
_HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


# ---------------------------------------------------------------------------- what changed


def config_changes(old: Config, new: Config) -> list[str]:
    """The keys that differ, as ``path: old -> new`` with the redacted values (``path: changed`` for a
    secret, ``path: added`` / ``path: removed`` for a whole section, list item or key).

    Compared on the real values (a new password is a change), shown redacted."""
    changes: list[str] = []
    _diff(old.model_dump(), new.model_dump(), old.redacted(), new.redacted(), (), changes)
    return changes


def _diff(a: Any, b: Any, shown_a: Any, shown_b: Any, path: tuple[Any, ...], out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in [*a, *(k for k in b if k not in a)]:
            where = (*path, key)
            if key not in b or (b[key] is None and a[key] is not None):
                out.append(f"{format_path(where)}: removed")
            elif key not in a or (a[key] is None and b[key] is not None):
                out.append(f"{format_path(where)}: added")
            else:
                _diff(a[key], b[key], shown_a[key], shown_b[key], where, out)
        return
    if isinstance(a, list) and isinstance(b, list) and all(isinstance(v, dict) for v in (*a, *b)):
        for index in range(max(len(a), len(b))):
            where = (*path, index)
            if index >= len(b):
                out.append(f"{format_path(where)}: removed")
            elif index >= len(a):
                out.append(f"{format_path(where)}: added")
            else:
                _diff(a[index], b[index], shown_a[index], shown_b[index], where, out)
        return
    if a == b:
        return
    if path and path[-1] in _SECRETS:
        out.append(f"{format_path(path)}: changed")
    else:
        out.append(f"{format_path(path)}: {_show(shown_a)} -> {_show(shown_b)}")


def _show(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def keeps_status_topic(old: Config, new: Config) -> bool:
    """The next run's MQTT publisher says ``online`` on the same broker and topic, as the same client."""
    if old.mqtt is None or new.mqtt is None:
        return False

    def where(c: Config) -> tuple[Any, ...]:
        assert c.mqtt is not None
        return (c.device, c.mqtt.host, c.mqtt.port, c.mqtt.topic_prefix, c.mqtt.client_id)

    return where(old) == where(new)


# ---------------------------------------------------------------------------- the loop


class _Signals:
    """The process's SIGINT/SIGTERM/SIGHUP handlers for the whole of :func:`serve`, routed to the daemon
    that runs now; between two runs they only decide whether the next one starts."""

    def __init__(self) -> None:
        self.daemon: Daemon | None = None
        self.stopping = False  # a stop signal arrived: start no further run
        self._between = 0

    def __call__(self, signum: int) -> None:
        if signum != signal.SIGHUP:
            self.stopping = True
        if self.daemon is not None:
            self.daemon._on_signal(signum)
            return
        name = signal.Signals(signum).name
        if signum == signal.SIGHUP:
            logger.warning("SIGHUP while restarting: ignored (send it again once running)")
            return
        self._between += 1
        if self._between < 3:
            logger.info("%s while restarting: stopping", name)
        else:
            logger.warning("third %s: exiting now", name)
            os._exit(1)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        installed = []
        for sig in _HANDLED:
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not in the main thread (tests)
                loop.add_signal_handler(sig, self, sig)
                installed.append(sig)
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)


async def serve(
    config: Config,
    *,
    load: Callable[[], Config] | None = None,
    duration: float | None = None,
    max_frames: int | None = None,
    status_interval: float = 5.0,
) -> RunSummary:
    """Run the daemon until it stops for good; ``load`` reads the config file again on SIGHUP.

    ``duration`` and ``max_frames`` count over all runs. Returns the summary of all runs together."""
    signals = _Signals()
    started = time.monotonic()
    total = RunSummary(frames=0, events=0, seconds=0.0, first_event_s=None)
    detector: Detector | DetectorPool | None = None
    previous: tuple[Config, Detector | DetectorPool | None] | None = (
        None  # what ran before a reload: the fallback
    )

    def make(cfg: Config, reuse: Detector | DetectorPool | None) -> Daemon:
        offset = time.monotonic() - started
        return Daemon(
            cfg,
            detector=reuse,
            duration=None if duration is None else max(0.0, duration - offset),
            max_frames=None if max_frames is None else max(0, max_frames - total.frames),
            status_interval=status_interval,
            reload=load,
            handle_signals=False,
        )

    with signals.installed():
        while not signals.stopping:
            if previous is not None and previous[1] is not None and previous[0].detector == config.detector:
                detector = previous[1]
            try:
                daemon = make(config, detector)
            except EdgeInferError as exc:
                if previous is None:
                    raise
                logger.error(
                    "reload: cannot start on the new config: %s; running the previous one again", exc
                )
                (config, detector), previous = previous, None
                continue
            if previous is not None and previous[1] is not None and previous[1] is not daemon.detector:
                previous[1].close()  # the new detector loaded: the old one goes
                previous = (previous[0], None)
            if signals.stopping:
                daemon.stop.set()
            signals.daemon = daemon
            run_started = time.monotonic() - started
            try:
                summary = await daemon.run()
            except EdgeInferError as exc:
                if previous is None or daemon.pipeline.frames_total:
                    raise
                logger.error(
                    "reload: cannot start on the new config: %s; running the previous one again", exc
                )
                if daemon.detector is not previous[1]:
                    daemon.detector.close()
                (config, detector), previous = previous, None
                continue
            finally:
                signals.daemon = None
            total = _add(total, summary, run_started)
            if daemon.reload_to is None:
                break
            previous, config, detector = (config, daemon.detector), daemon.reload_to, None
    total.seconds = time.monotonic() - started
    return total


def _add(total: RunSummary, run: RunSummary, run_started: float) -> RunSummary:
    first = total.first_event_s
    if first is None and run.first_event_s is not None:
        first = run_started + run.first_event_s
    return RunSummary(
        frames=total.frames + run.frames,
        events=total.events + run.events,
        seconds=total.seconds + run.seconds,
        first_event_s=first,
        unfinished=total.unfinished + run.unfinished,
    )
