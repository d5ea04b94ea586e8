"""One benchmark configuration, in a process of its own: ``python -m edgeinfer.bench.worker SPEC_JSON``.

The pipeline's detector is loaded once, its instances x threads x batch chosen as the daemon would
(``auto``: measured, :mod:`edgeinfer.detect.tuning`) unless the spec fixes them. Per repeat, in this
order: the real pipeline (a fresh :class:`~edgeinfer.app.daemon.Daemon`: warm-up, then the measured
period); the **limit**: every instances x threads x batch candidate run bare on pre-built tensors, all
instances invoking at once, and the best of them; the **naive** baseline (one interpreter constructed
with the runtime's default threads, as tutorials do: prepare, infer, decode one frame at a time,
round-robin over the cameras) and **naive_tuned** (the same loop with the thread count that is best for a
single interpreter in this repeat's sweep). Protocol lines on stdout start with ``PREFIX``:
progress lines, then one result line; everything else (runtime chatter) is ignored by the runner.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.bench.spec import RunSpec
from edgeinfer.bench.stats import cdf_points, summarize
from edgeinfer.bench.threadcpu import cpu_by_group, thread_cpu
from edgeinfer.memory import limit_malloc_arenas

PREFIX = "EDGEINFER-BENCH "
WINDOW = 1_000_000  # metric window: holds every sample of a measured period
LIMIT_LATENCY_BATCH = 1
FIRST_FRAME_TIMEOUT_S = 60.0
HEAVY_MODULES = ("influxdb_client", "paho", "aiomqtt", "aiohttp", "onnxruntime", "matplotlib")


def _emit(kind: str, payload: Any) -> None:
    sys.stdout.write(PREFIX + json.dumps({kind: payload}) + "\n")
    sys.stdout.flush()


def _maxrss_mb() -> float:
    # Linux reports ru_maxrss in KiB (macOS in bytes).
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def _process_start_monotonic() -> float:
    """The process's start on the monotonic clock (psutil create_time is wall-clock, 10 ms resolution)."""
    import psutil

    return time.monotonic() - (time.time() - psutil.Process().create_time())


def build_config(spec: RunSpec, data_dir: Path) -> Any:
    from edgeinfer.config import (
        BatchingConfig,
        CameraConfig,
        Config,
        DetectorConfig,
        HTTPConfig,
        SyntheticSourceConfig,
    )

    cameras = [
        CameraConfig(
            name=f"cam{i}",
            source=SyntheticSourceConfig(
                type="synthetic",
                seed=i + 1,
                width=spec.width,
                height=spec.height,
                objects=spec.objects,
                prerender=spec.prerender,
            ),
            fps=spec.fps,
            events="every_frame",
        )
        for i in range(spec.cameras)
    ]
    return Config(
        device="bench",
        data_dir=data_dir,
        cameras=cameras,
        detector=DetectorConfig(
            model=spec.model,
            backend=spec.backend,
            instances=spec.instances or "auto",
            threads=spec.threads or "auto",
            nice=spec.nice,
        ),
        batching=BatchingConfig(max_batch_size=spec.max_batch_size, max_delay_ms=spec.max_delay_ms),
        http=HTTPConfig(enabled=False),
    )


# ---------------------------------------------------------------------------- the pipeline


async def _pipeline_once(spec: RunSpec, detector: Any, proc: Any) -> dict[str, Any]:
    from edgeinfer.app.daemon import Daemon
    from edgeinfer.app.metrics import STAGES, Metrics
    from edgeinfer.detect.tuning import usable_cores

    with tempfile.TemporaryDirectory(prefix="edgeinfer-bench-") as tmp:
        config = build_config(spec, Path(tmp))
        metrics = Metrics(window_size=WINDOW)
        created = time.monotonic()
        daemon = Daemon(config, detector=detector, metrics=metrics, status_interval=3600.0)
        task = asyncio.create_task(daemon.run())

        async def sleep_or_fail(seconds: float) -> None:
            done, _ = await asyncio.wait({task}, timeout=seconds)
            if done:
                task.result()  # raises the daemon's error
                raise RuntimeError("the daemon stopped before the measurement ended")

        pipeline = daemon.pipeline
        # Wait for the first processed batch (startup even when the model sees nothing); the warm-up
        # starts after it, so a slow start does not eat into it. ``last_progress`` is the first batch's
        # completion time while ``batches`` is still 1; later, the poll's time is the best we have.
        while pipeline.frames_total == 0:
            if time.monotonic() - created > FIRST_FRAME_TIMEOUT_S:
                raise RuntimeError(f"no frame processed within {FIRST_FRAME_TIMEOUT_S:.0f} s")
            await sleep_or_fail(0.002)
        first_batch_done = pipeline.last_progress if pipeline.batches == 1 else time.monotonic()
        first_frame_s = first_batch_done - created
        await sleep_or_fail(spec.warmup)
        for window in metrics.windows.values():
            window.clear()
        pipeline.builder.tracking_ms.clear()
        frames0, batches0 = pipeline.frames_total, pipeline.batches
        counters0 = pipeline.batcher.counters()
        threads0, cpu0, wall0 = thread_cpu(), proc.cpu_times(), time.monotonic()
        await sleep_or_fail(spec.duration)
        wall1, cpu1, threads1 = time.monotonic(), proc.cpu_times(), thread_cpu()
        frames1, batches1 = pipeline.frames_total, pipeline.batches
        counters1 = pipeline.batcher.counters()
        samples = {stage: metrics.windows[stage].values() for stage in STAGES}
        samples["handoff"] = _handoff(samples)
        # tracker + lifecycle per frame (part of postprocess), as the outcome builder timed it
        samples["tracking"] = _snapshot_floats(pipeline.builder.tracking_ms)
        rss_now_mb = proc.memory_info().rss / 2**20
        daemon.stop.set()
        summary = await task
    seconds = wall1 - wall0
    frames = frames1 - frames0
    batches = batches1 - batches0
    dropped = sum(
        (counters1[n]["superseded"] + counters1[n]["stale"])
        - (counters0[n]["superseded"] + counters0[n]["stale"])
        for n in counters1
    )
    cpu_s = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    per_frame = None
    if threads0 is not None and threads1 is not None and frames:
        per_frame = {g: 1e3 * s / frames for g, s in cpu_by_group(threads0, threads1).items()}
    return {
        "pipeline_fps": frames / seconds if seconds > 0 else 0.0,
        "frames": frames,
        "batches": batches,
        "mean_batch_size": frames / batches if batches else None,
        "dropped": dropped,
        "cpu_percent": 100.0 * cpu_s / seconds if seconds > 0 else None,
        "instance_nice": pipeline.stages.nice,
        # Where the CPU went, per thread group, in ms per processed frame; and the most frames a second
        # the usable cores could give at that cost per frame (a CPU-bound pipeline's ceiling).
        "cpu_ms_per_frame": per_frame,
        "cpu_bound_fps": 1e3 * usable_cores() / sum(per_frame.values()) if per_frame else None,
        "rss_mb": rss_now_mb,
        "seconds": seconds,
        "latency_ms": {stage: summarize(values) for stage, values in samples.items()},
        "e2e_samples": samples["e2e"],
        "daemon_created_mono": created,
        # Pipeline.first_event_s counts from the Pipeline's construction; make it count from Daemon().
        "first_event_s": None
        if summary.first_event_s is None
        else summary.first_event_s + (pipeline.started - created),
        "first_frame_s": first_frame_s,
    }


def _snapshot_floats(values: Any) -> np.ndarray:
    """A copy of a deque another thread appends to (copying raises if an append lands meanwhile: retry)."""
    for _ in range(100):
        try:
            return np.array(list(values), dtype=float)
        except RuntimeError:
            continue
    return np.zeros(0)


def _handoff(samples: dict[str, np.ndarray]) -> np.ndarray:
    """Per frame, e2e minus queue, preprocess, inference and postprocess: the time a batch spends
    waiting between stages (the prepare->infer and infer->finish queues, executor hand-offs). The
    pipeline appends one sample per frame to each of these windows in the same order, so they align."""
    parts = [samples[s] for s in ("e2e", "queue", "preprocess", "inference", "postprocess")]
    if len({len(p) for p in parts}) != 1:
        return np.empty(0)
    handoff: np.ndarray = np.maximum(parts[0] - parts[1] - parts[2] - parts[3] - parts[4], 0.0)
    return handoff


# ---------------------------------------------------------------------------- the baselines


def _rings(spec: RunSpec) -> list[list[np.ndarray]]:
    """The same prerendered frames the pipeline's synthetic cameras loop over."""
    from edgeinfer.config import SyntheticSourceConfig
    from edgeinfer.sources.synthetic import SyntheticReader

    rings = []
    for i in range(spec.cameras):
        cfg = SyntheticSourceConfig(
            type="synthetic",
            seed=i + 1,
            width=spec.width,
            height=spec.height,
            objects=spec.objects,
            prerender=max(1, spec.prerender),
        )
        reader = SyntheticReader(cfg)
        reader.open()
        frames = [reader.read() for _ in range(cfg.prerender)]
        rings.append([f for f in frames if f is not None])
    return rings


def measure_limit_paced(detector: Any, tensors: list[np.ndarray], fps: float, runs: int) -> dict[str, Any]:
    """Bare ``backend.run`` at batch 1 paced at ``fps`` like a camera (the runtime idles in between),
    for comparing a paced pipeline's latency with the runtime's own at the same pace."""
    run = detector.backend.run
    run(tensors[0])
    period = 1.0 / fps
    times: list[float] = []
    next_due = time.perf_counter()
    for k in range(runs):
        next_due += period
        t0 = time.perf_counter()
        run(tensors[k % len(tensors)])
        t1 = time.perf_counter()
        times.append(t1 - t0)
        time.sleep(max(0.0, next_due - t1))
    return {"fps": fps, "runs": runs, "batch": 1, "latency_ms": summarize(np.asarray(times) * 1e3)}


def measure_naive(
    detector: Any, rings: list[list[np.ndarray]], seconds: float, min_frames: int = 5
) -> dict[str, Any]:
    """The tutorial loop: read a frame, preprocess, invoke, postprocess; round-robin over the cameras."""
    cursors = [0] * len(rings)
    times: list[float] = []
    k = 0
    start = time.perf_counter()
    end = start + seconds
    while True:
        t0 = time.perf_counter()
        cam = k % len(rings)
        ring = rings[cam]
        image = ring[cursors[cam] % len(ring)]
        cursors[cam] += 1
        prepared = detector.prepare([image])
        raw = detector.infer(prepared)
        detector.decode(raw, prepared)
        t1 = time.perf_counter()
        times.append(t1 - t0)
        k += 1
        if t1 >= end and k >= min_frames:
            break
    wall = time.perf_counter() - start
    return {"fps": k / wall, "frames": k, "latency_ms": summarize(np.asarray(times) * 1e3)}


def measure_sweep(spec: RunSpec, tensors: dict[int, list[np.ndarray]]) -> list[dict[str, Any]]:
    """Every instances x threads x batch candidate of this machine, bare and concurrent: the limit."""
    from edgeinfer.detect import tuning

    open_instance = _instance_opener(spec)
    seconds = max(0.3, spec.baseline_seconds / 2)
    out = []
    for candidate in tuning.candidates(tuning.usable_cores(), spec.max_batch_size):
        measured = tuning.measure(open_instance, tensors, candidate, seconds)
        out.append({**measured.to_json(), "latency_ms": {"p50": measured.p50_ms}})
    return out


def _instance_opener(spec: RunSpec) -> Any:
    from edgeinfer.detect.assets import resolve_model
    from edgeinfer.detect.backends import open_backend

    path = resolve_model(spec.model, spec.backend)
    return lambda threads: open_backend(spec.backend, path, threads=threads)  # type: ignore[arg-type]


def _naive(spec: RunSpec, threads: int, rings: list[list[np.ndarray]]) -> dict[str, Any]:
    """The naive loop on a detector of one interpreter; ``threads`` 0: the runtime's default."""
    from edgeinfer.config import DetectorConfig
    from edgeinfer.detect.build import assemble, resolve_pinned

    cfg = DetectorConfig(model=spec.model, backend=spec.backend)
    path, digest = resolve_pinned(cfg.model, None, cfg.backend)
    detector = assemble(cfg, path, digest, _instance_opener(spec)(threads))
    try:
        return measure_naive(detector, rings, spec.baseline_seconds)
    finally:
        detector.close()


# ---------------------------------------------------------------------------- main


def run_worker(spec: RunSpec) -> dict[str, Any]:
    import psutil

    proc = psutil.Process()
    start_mono = _process_start_monotonic()
    from edgeinfer.detect.pool import open_pool, sample_tensors
    from edgeinfer.tracking import decoder_conf

    # The detector the daemon would open for this config (its decoder keeps the trackers' low scores).
    config = build_config(spec, Path(tempfile.gettempdir()))
    cfg = config.detector.model_copy(update={"conf": decoder_conf(config)})
    rss0 = proc.memory_info().rss
    t0 = time.monotonic()
    detector = open_pool(cfg, max_batch=spec.max_batch_size, data_dir=None)
    model_load_s = time.monotonic() - t0
    pool_rss_mb = (proc.memory_info().rss - rss0) / 2**20
    info = detector.info
    model = {
        "name": info.name,
        "file": info.path.name,
        "sha256": info.sha256,
        "input": {
            "shape": list(detector.instances[0].backend.input.shape),
            "hw": list(info.input_hw),
            "dtype": str(detector.instances[0].backend.input.dtype),
            "layout": info.input_layout,
            "channels": info.channels,
        },
        "output_layout": info.output_layout,
        "classes": len(info.labels),
        "backend": info.backend,
        "runtime_version": info.runtime_version,
        "size_bytes": info.path.stat().st_size,
    }

    repeats: list[dict[str, Any]] = []
    startup: dict[str, Any] = {}
    rings: list[list[np.ndarray]] | None = None
    limit_tensors: dict[int, list[np.ndarray]] = {}
    pipeline_peak_rss_mb: float | None = None
    pipeline_batch_sizes: list[int] = []
    heavy_imports: list[str] = []
    for r in range(spec.repeats):
        pipe = asyncio.run(_pipeline_once(spec, detector, proc))
        if r == 0:
            # Before any baseline ran: the process peak so far is the daemon's (imports, model, pipeline).
            pipeline_peak_rss_mb = _maxrss_mb()
            pipeline_batch_sizes = sorted(getattr(detector.instances[0].backend, "_by_batch", {}))
            heavy_imports = sorted(m for m in HEAVY_MODULES if m in sys.modules)
            before_daemon = pipe["daemon_created_mono"] - start_mono
            event, frame = pipe["first_event_s"], pipe["first_frame_s"]
            startup = {
                "first_event_from_process_start_s": None if event is None else before_daemon + event,
                "first_event_from_daemon_start_s": event,
                "first_frame_from_process_start_s": None if frame is None else before_daemon + frame,
                "process_start_to_daemon_s": before_daemon,
                "model_load_s": model_load_s,
            }
        e2e_samples = pipe.pop("e2e_samples")
        pipe["e2e_cdf"] = cdf_points(e2e_samples)
        gc.collect()
        if rings is None:
            t_ring = time.monotonic()
            rings = _rings(spec)
            # What the synthetic cameras spent rendering their rings at startup (a harness artefact).
            startup["ring_render_s"] = time.monotonic() - t_ring
            frames = [f for ring in rings for f in ring]
            limit_tensors = sample_tensors(
                detector, sorted({LIMIT_LATENCY_BATCH, spec.max_batch_size}), frames, 4
            )
        sweep = measure_sweep(spec, limit_tensors)
        limit = max(sweep, key=lambda m: m["fps"])
        choice = detector.choice
        limit_b1 = next(
            m
            for m in sweep
            if (m["instances"], m["threads"], m["batch"]) == (choice.instances, choice.threads, 1)
        )
        single = [m for m in sweep if m["instances"] == 1 and m["batch"] == 1]
        tuned_threads = max(single, key=lambda m: m["fps"])["threads"]
        naive = _naive(spec, 0, rings)
        naive_tuned = {**_naive(spec, tuned_threads, rings), "threads": tuned_threads}
        paced = None
        if spec.fps is not None:
            runs = max(20, int(spec.baseline_seconds * spec.fps))
            paced = measure_limit_paced(
                detector.instances[0], limit_tensors[LIMIT_LATENCY_BATCH], spec.fps, runs
            )
        repeats.append(
            {
                "pipeline": pipe,
                "limit": limit,
                "limit_b1": limit_b1,
                "sweep": sweep,
                "naive": naive,
                "naive_tuned": naive_tuned,
                "limit_paced": paced,
            }
        )
        _emit("progress", {"repeat": r + 1, "of": spec.repeats, "pipeline_fps": pipe["pipeline_fps"]})
    return {
        "spec": spec.to_json(),
        "model": model,
        "model_load_s": model_load_s,
        "startup": startup,
        "peak_rss_mb": pipeline_peak_rss_mb,
        "detector": {
            "instances": detector.choice.instances,
            "threads": detector.choice.threads,
            "batch": detector.choice.batch,
            "how": detector.choice.how,
            "nice": repeats[0]["pipeline"]["instance_nice"] if repeats else None,  # as the daemon set it
            "tuning": [m.to_json() for m in detector.choice.measured],
            # RSS the instances added when they were opened (the model file's pages are shared).
            "rss_mb_per_instance": pool_rss_mb / detector.choice.instances,
        },
        # The synthetic cameras' prerendered rings: a harness artefact (a real camera holds ~1 frame).
        "ring_mb": spec.cameras * spec.prerender * spec.width * spec.height * 3 / 2**20,
        "worker_peak_rss_mb": _maxrss_mb(),
        # Diagnostics: the LiteRT backend keeps one interpreter per batch size it has seen.
        "interpreter_batch_sizes": pipeline_batch_sizes,
        # Optional-output libraries loaded by a daemon that uses neither output (startup time and RSS).
        "heavy_imports": heavy_imports,
        "repeats": repeats,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m edgeinfer.bench.worker SPEC_JSON", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    spec = RunSpec.from_json(json.loads(argv[0]))
    limit_malloc_arenas()  # as `edgeinfer run` does: the worker stands for the daemon
    try:
        result = run_worker(spec)
    except Exception as exc:
        logging.getLogger("edgeinfer.bench").exception("benchmark worker failed")
        _emit("error", f"{type(exc).__name__}: {exc}")
        return 1
    _emit("result", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
