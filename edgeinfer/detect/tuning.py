"""How many runtime instances, how many threads each, which batch cap: chosen by measurement.

On a CPU, one interpreter with several XNNPACK threads is rarely the machine's best: intra-op threading
costs more than it gives on a small model, batching adds little, and ``invoke()`` releases the GIL, so
independent interpreters on their own threads scale (Triton's instance groups and OpenVINO's throughput
streams do the same). Which combination wins differs between machines and even runs, so nothing here is
a formula: each candidate (instances x threads x batch, never more threads in all than usable cores) runs
bare on pre-built tensors, all its instances invoking at once, for a short while, and :func:`choose`
keeps the best throughput among the configurations whose batch-1 p50 latency stays within
``LATENCY_SLACK`` x the best batch-1 p50 (so a configuration that only wins by making every frame slow
is not picked). Throughputs are compared as the pipeline would see them: it spends about
``PIPELINE_BATCH_S`` per batch that a bare run does not (the hand-offs to and from an instance, the decode
call, the store's transaction, the loop's wake-ups), so a candidate's ``fps`` counts as
``1 / (1 / fps + PIPELINE_BATCH_S / batch)``. On the 2-core benchmark machine 2 x 1 threads ran 971
frames/s bare at batch 1 and 865 at batch 4, yet the 4-camera pipeline 326 at batch 1 against 461 at
batch 4: 1.2 ms more per batch (benchmarks/RESULTS.md, "2026-12-02, fourth pass"). Of the throughputs
within ``TIE_SHARE`` of the best, the largest batch wins.

The choice is cached in a JSON file keyed by the model's sha256, the runtime and its version, the CPU
model, the usable cores and the constraints, so only the first start on a device pays for it (a few
seconds). A fleet of identical boxes can ship that file: ``EDGEINFER_TUNING_CACHE`` names it (default:
``tuning.json`` in the data dir).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger(__name__)

LATENCY_SLACK = 1.5
TIE_SHARE = 0.05  # throughputs this close are within a run's noise here
PIPELINE_BATCH_S = 0.001  # what the pipeline spends per batch besides the runtime (1.2 ms measured here)
MEASURE_S = 0.4  # per candidate, after its warm-up runs
WARMUP_RUNS = 2  # each instance alone, then all at once for WARMUP_S
# Unmeasured, all instances running: with two runs only, the first candidate of a fresh process measured
# 1.4x its p50 in a warm one (2.33 against 1.63 ms), enough to turn the latency rule's verdict.
WARMUP_S = 0.15
CACHE_ENV = "EDGEINFER_TUNING_CACHE"
# 2: ties go to the larger batch; 3: the pipeline's cost per batch counts (older choices: measured again)
CACHE_VERSION = 3


class Runnable(Protocol):
    def run(self, batch: np.ndarray) -> list[np.ndarray]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Candidate:
    instances: int
    threads: int  # per instance
    batch: int


@dataclass(frozen=True, slots=True)
class Measured:
    candidate: Candidate
    fps: float  # images per second, all instances together
    p50_ms: float  # median duration of one run (of ``batch`` images) while all instances ran

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self.candidate), "fps": round(self.fps, 1), "p50_ms": round(self.p50_ms, 3)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Measured:
        return cls(Candidate(data["instances"], data["threads"], data["batch"]), data["fps"], data["p50_ms"])


@dataclass(frozen=True, slots=True)
class Choice:
    instances: int
    threads: int
    batch: int  # the batch cap that won (at most the configured max_batch_size)
    how: str  # "measured", "cached", "configured"
    measured: tuple[Measured, ...] = ()

    def describe(self) -> str:
        text = f"{self.instances} instance(s) x {self.threads} thread(s), batch <= {self.batch}"
        best = next((m for m in self.measured if m.candidate == self.candidate), None)
        if best is not None:
            text += f" ({best.fps:.0f} frames/s bare)"
        return f"{text}, {self.how}"

    @property
    def candidate(self) -> Candidate:
        return Candidate(self.instances, self.threads, self.batch)


def usable_cores() -> int:
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def candidates(
    cores: int, max_batch: int, *, instances: int | None = None, threads: int | None = None
) -> list[Candidate]:
    """Instance counts 1, 2, 4, ... up to the cores (or the fixed one); per instance 1 thread and
    cores / instances (or the fixed count); batch 1 and ``max_batch``."""
    counts = [instances] if instances else sorted({n for n in (1, 2, 3, 4, 6, 8) if n <= cores} | {1})
    out = []
    for n in counts:
        per = [threads] if threads else sorted({1, max(1, cores // n)})
        for t in per:
            for b in sorted({1, max_batch}):
                out.append(Candidate(n, t, b))
    return out


def measure(
    open_instance: Callable[[int], Runnable],
    tensors: Mapping[int, Sequence[np.ndarray]],
    candidate: Candidate,
    seconds: float = MEASURE_S,
    warmup: float = WARMUP_S,
) -> Measured:
    """Open ``candidate.instances`` runtimes and run them all at once, back to back, on ``tensors[batch]``:
    ``warmup`` seconds unmeasured, then ``seconds`` measured (runs that started in that window)."""
    backends = [open_instance(candidate.threads) for _ in range(candidate.instances)]
    inputs = tensors[candidate.batch]
    try:
        for backend in backends:
            for k in range(WARMUP_RUNS):
                backend.run(inputs[k % len(inputs)])
        durations: list[list[float]] = [[] for _ in backends]
        start = threading.Barrier(len(backends) + 1)
        measured_from = deadline = 0.0

        def loop(i: int) -> None:
            start.wait()
            runs, k = durations[i], i
            while True:
                t0 = time.perf_counter()
                backends[i].run(inputs[k % len(inputs)])
                t1 = time.perf_counter()
                if t0 >= measured_from:
                    runs.append(t1 - t0)
                k += 1
                if t1 >= deadline and runs:  # a slow model: at least one measured run each
                    return

        workers = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(len(backends))]
        for worker in workers:
            worker.start()
        measured_from = time.perf_counter() + warmup
        deadline = measured_from + seconds
        start.wait()
        for worker in workers:
            worker.join()
        wall = time.perf_counter() - measured_from
    finally:
        for backend in backends:
            backend.close()
    runs = [d for per in durations for d in per]
    return Measured(candidate, len(runs) * candidate.batch / wall, float(np.median(runs)) * 1e3)


def choose(
    measured: Sequence[Measured],
    slack: float = LATENCY_SLACK,
    tie: float = TIE_SHARE,
    batch_s: float = PIPELINE_BATCH_S,
) -> Measured:
    """The best throughput in the pipeline (:func:`in_pipeline`, with ``batch_s`` per batch) among the
    configurations whose batch-1 p50 is within ``slack`` x the best one; of those within ``tie`` of that
    throughput, the largest batch (then the fastest)."""
    if not measured:
        raise ValueError("nothing was measured")
    b1 = {(m.candidate.instances, m.candidate.threads): m.p50_ms for m in measured if m.candidate.batch == 1}
    best_b1 = min(b1.values(), default=None)

    def admissible(m: Measured) -> bool:
        p50 = b1.get((m.candidate.instances, m.candidate.threads))
        return best_b1 is None or p50 is None or p50 <= slack * best_b1

    allowed = {m: in_pipeline(m, batch_s) for m in measured if admissible(m)}
    top = max(allowed.values())
    return max(
        (m for m, fps in allowed.items() if fps >= (1.0 - tie) * top),
        key=lambda m: (m.candidate.batch, m.fps),
    )


def in_pipeline(m: Measured, batch_s: float = PIPELINE_BATCH_S) -> float:
    """Frames a second ``m`` would give in a pipeline that spends ``batch_s`` per batch besides the runtime."""
    return 1.0 / (1.0 / m.fps + batch_s / m.candidate.batch) if m.fps > 0 else 0.0


# ------------------------------------------------------------------ the cache


def cache_path(data_dir: Path) -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else data_dir / "tuning.json"


def cache_key(**parts: Any) -> str:
    text = json.dumps({"version": CACHE_VERSION, **parts}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_cached(path: Path, key: str) -> Choice | None:
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))[key]
        measured = tuple(Measured.from_json(m) for m in entry["measured"])
        return Choice(entry["instances"], entry["threads"], entry["batch"], "cached", measured)
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or unreadable: measure again
        return None


def save_cached(path: Path, key: str, choice: Choice, about: dict[str, Any]) -> None:
    try:
        entries = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        if not isinstance(entries, dict):
            entries = {}
    except (OSError, ValueError):
        entries = {}
    entries[key] = {
        "instances": choice.instances,
        "threads": choice.threads,
        "batch": choice.batch,
        "measured": [m.to_json() for m in choice.measured],
        "about": about,
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(entries, indent=1), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:  # a read-only data dir: measure again next start
        logger.warning("detector: cannot cache the tuning in %s: %s", path, exc)
