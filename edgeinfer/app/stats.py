"""The daemon's stats: rolling windows (latency samples, frame completion times) and the frozen
:class:`Stats` snapshot whose :meth:`Stats.to_json` is the stats payload (schemas/stats.schema.json,
less the ``device``, ``ts`` and ``store_backlog`` the MQTT publisher adds), and :func:`status_line`, the
line the daemon logs every status interval, from a snapshot and the outputs' :class:`SinkState`."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from edgeinfer.pipeline.types import PipelineStatus, Stage

FPS_WINDOW_S = 5.0


class Window:
    """The last ``size`` samples, for percentiles in status lines and stats messages."""

    def __init__(self, size: int = 2048) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, value: float) -> None:
        self._values.append(value)

    def clear(self) -> None:
        self._values.clear()

    def values(self) -> np.ndarray:
        return np.fromiter(self._values, float)

    def percentiles(self, qs: tuple[float, ...] = (50, 99)) -> list[float] | None:
        if not self._values:
            return None
        return [float(v) for v in np.percentile(np.fromiter(self._values, float), qs)]

    def mean(self) -> float | None:
        return float(np.mean(np.fromiter(self._values, float))) if self._values else None


class FpsWindow:
    """The completion times of a camera's last ``size`` frames, for its recent rate."""

    def __init__(self, size: int = 256) -> None:
        self._times: deque[float] = deque(maxlen=size)

    def add(self, done: float) -> None:
        self._times.append(done)

    def rate(self, now: float, window_s: float = FPS_WINDOW_S) -> float:
        """Frames per second over the last ``window_s`` (0 with fewer than two frames in it)."""
        recent = [t for t in self._times if now - t <= window_s]
        span = now - recent[0] if len(recent) > 1 else 0.0
        return (len(recent) - 1) / span if span > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Percentiles:
    p50: float
    p90: float
    p99: float

    @classmethod
    def of(cls, window: Window) -> Percentiles | None:
        p = window.percentiles((50, 90, 99))
        return None if p is None else cls(*p)

    def to_json(self) -> dict[str, float]:
        return {"p50": round(self.p50, 3), "p90": round(self.p90, 3), "p99": round(self.p99, 3)}


@dataclass(frozen=True, slots=True)
class Stats:
    uptime_s: float
    fps: dict[str, float]  # processed frames per second per camera, last FPS_WINDOW_S
    frames: dict[str, int]  # processed per camera since start
    drops: dict[str, int]  # superseded + stale per camera since start
    cameras_up: dict[str, bool]
    batch_size_mean: float  # over the recent batches
    stage_latency_ms: dict[Stage, Percentiles]  # stages with samples, in Stage order

    @property
    def latency_ms(self) -> Percentiles | None:
        """End to end."""
        return self.stage_latency_ms.get(Stage.E2E)

    @classmethod
    def collect(
        cls,
        status: PipelineStatus,
        windows: Mapping[str, Window],
        batch_window: Window,
        fps: Mapping[str, FpsWindow],
    ) -> Stats:
        stages = {}
        for name, window in windows.items():
            p = Percentiles.of(window)
            if p is not None:
                stages[Stage(name)] = p
        return cls(
            uptime_s=status.uptime_s,
            fps={name: fps[name].rate(status.mono) if name in fps else 0.0 for name in status.frames},
            frames=dict(status.frames),
            drops=dict(status.drops),
            cameras_up=dict(status.cameras_up),
            batch_size_mean=batch_window.mean() or 0.0,
            stage_latency_ms=stages,
        )

    def to_json(self) -> dict[str, Any]:
        stages = {stage.value: p.to_json() for stage, p in self.stage_latency_ms.items()}
        return {
            "uptime_s": round(self.uptime_s, 1),
            "fps": {name: round(rate, 2) for name, rate in self.fps.items()},
            "frames": dict(self.frames),
            "drops": dict(self.drops),
            "cameras_up": dict(self.cameras_up),
            "batch_size_mean": round(self.batch_size_mean, 3),
            "latency_ms": stages.get(Stage.E2E.value, {}),
            "stage_latency_ms": stages,
        }


# ---------------------------------------------------------------------------- the status line


@dataclass(frozen=True, slots=True)
class SinkState:
    """An output as the status line shows it: connected now (None: not tried yet), rows waiting in the
    store (None: could not be counted, e.g. while the store fails)."""

    sink: str  # "mqtt", "influxdb"
    connected: bool | None
    backlog: int | None


@runtime_checkable
class ReportsState(Protocol):
    """What an output offers the status line (MQTTPublisher, InfluxForwarder): read-only but for the
    output's own backlog gauge, which ``count_backlog`` refreshes."""

    sink: str

    @property
    def connected(self) -> bool | None: ...

    async def count_backlog(self) -> int: ...


def _connection(connected: bool | None) -> str:
    return {True: "connected", False: "disconnected", None: "not tried yet"}[connected]


def status_line(stats: Stats, sinks: Sequence[SinkState] = (), events: int = 0) -> str:
    """``fps dock=10.0 yard=down | batch 1.95 | e2e p50 14.2 ms p99 21.0 ms | dropped 3 | events 812 |
    mqtt connected backlog 0 | influxdb disconnected backlog 1200``.

    A camera that is not reading frames now says ``down`` (not its last rate); before the first batch the
    batch and latency parts say ``waiting for first frame``."""
    cameras = " ".join(
        f"{name}={rate:.1f}" if stats.cameras_up.get(name, False) else f"{name}=down"
        for name, rate in stats.fps.items()
    )
    parts = [f"fps {cameras or '-'}"]
    e2e = stats.latency_ms
    if e2e is None:
        parts.append("waiting for first frame")
    else:
        parts.append(f"batch {stats.batch_size_mean:.2f}")
        parts.append(f"e2e p50 {e2e.p50:.1f} ms p99 {e2e.p99:.1f} ms")
    parts.append(f"dropped {sum(stats.drops.values())}")
    parts.append(f"events {events}")
    parts.extend(
        f"{s.sink} {_connection(s.connected)} backlog {'?' if s.backlog is None else s.backlog}"
        for s in sinks
    )
    return " | ".join(parts)
