"""What one benchmark configuration is (passed to a worker process as JSON)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class RunSpec:
    cameras: int = 4
    max_batch_size: int = 4
    max_delay_ms: float = 10.0
    instances: int | None = None  # per-pipeline runtime instances; None: auto (measured, as the daemon does)
    threads: int | None = None  # per instance; None: auto
    nice: int = 10  # detector.nice
    backend: str = "auto"
    model: str = "bundled"
    fps: float | None = None  # per camera; None: unlimited (demand-driven synthetic source)
    width: int = 640
    height: int = 480
    objects: int = 4
    prerender: int = 8  # frames per camera ring (each 640x480x3 = 0.9 MB; it counts in peak RSS)
    duration: float = 10.0  # measured seconds per repeat
    warmup: float = 3.0  # seconds per repeat before measuring
    repeats: int = 3
    baseline_seconds: float = 3.0  # per baseline per repeat
    label: str = ""  # e.g. "latency" for the 1-camera-at-10-fps configuration

    @property
    def name(self) -> str:
        fps = "max" if self.fps is None else f"{self.fps:g}"
        return f"{self.cameras}cam/b{self.max_batch_size}/{fps}fps"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunSpec:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
