"""The document ``/api/status`` answers: the stats snapshot (the keys of the stats payload, unchanged)
plus what the live page shows beside it: each camera's state with the reason it is not up (URL passwords
redacted by the camera health), its own e2e percentiles, the detector, and each sink's connection and
store backlog."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edgeinfer.app.stats import SinkState, Window
from edgeinfer.config import Config
from edgeinfer.pipeline.cameras import CameraHealth
from edgeinfer.pipeline.types import ModelInfoLike


def status_document(
    config: Config,
    stats: Mapping[str, Any],
    health: Sequence[CameraHealth],
    e2e: Mapping[str, Window],
    sinks: Sequence[SinkState],
    *,
    detector: ModelInfoLike,
    events: int,
    instances: int = 1,
    threads: int | None = None,
    max_batch_size: int | None = None,
) -> dict[str, Any]:
    states = {h.name: h for h in health}
    cameras = []
    for camera in config.cameras:
        name = camera.name
        state = states.get(name, CameraHealth(name, "starting", "not started yet"))
        window = e2e.get(name)
        p = window.percentiles((50, 99)) if window is not None else None
        cameras.append(
            {
                "name": name,
                "state": state.state,
                "detail": state.detail,
                "fps": stats.get("fps", {}).get(name, 0.0),
                "frames": stats.get("frames", {}).get(name, 0),
                "drops": stats.get("drops", {}).get(name, 0),
                "e2e_ms": None if p is None else {"p50": round(p[0], 2), "p99": round(p[1], 2)},
            }
        )
    return {
        **stats,
        "device": config.device,
        "events": events,
        "cameras": cameras,
        "detector": {
            "model": detector.name,
            "backend": detector.backend,
            "instances": instances,
            "threads": threads,
            "max_batch_size": max_batch_size or config.batching.max_batch_size,
        },
        "sinks": [{"sink": s.sink, "connected": s.connected, "backlog": s.backlog} for s in sinks],
        "live": {"fps": config.http.live_fps, "width": config.http.live_width},
    }
