"""Detector instances: the same model loaded N times, each in its own runtime object on its own thread.

An instance is just another :class:`~edgeinfer.detect.detector.Detector` (its own backend, preprocessor
and decoder), so the ``Backend`` protocol stays the one seam. The pipeline runs a whole batch (prepare,
infer, decode) on whichever instance is free. :func:`open_pool` reads ``detector.instances`` and
``detector.threads`` and, where either is ``auto``, asks :mod:`edgeinfer.detect.tuning` (measured once
per device, then cached).

Memory: LiteRT and ONNX Runtime map the model file, so instances share its pages; each adds its own
tensor arena (reported per instance in ``edgeinfer bench``). TensorRT: the instances are execution
contexts of one engine (the weights are on the GPU once; each context has its own stream and buffers),
and ``auto`` measures 1 to ``GPU_CONTEXTS`` contexts the same way (threads do not apply: one each). That
path runs only on a Jetson; here tests/unit/test_tensorrt_fake.py checks it against a named fake.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edgeinfer.config import DetectorConfig
from edgeinfer.detect import tuning
from edgeinfer.detect.backends import backend_for_file, open_backend
from edgeinfer.detect.backends.base import Backend
from edgeinfer.detect.build import assemble, resolve_pinned
from edgeinfer.detect.detections import Detections
from edgeinfer.detect.detector import Detector, ModelInfo, Prepared

logger = logging.getLogger(__name__)

GPU_CONTEXTS = 3  # TensorRT: the most execution contexts ``auto`` tries (beyond 2-3 a small GPU only queues)


class DetectorPool:
    """N detectors of one model. Acts as the first one for callers that want a single detector."""

    def __init__(self, instances: Sequence[Detector], choice: tuning.Choice) -> None:
        if not instances:
            raise ValueError("a pool needs at least one instance")
        self.instances = list(instances)
        self.choice = choice

    @property
    def labels(self) -> list[str]:
        return self.instances[0].labels

    @property
    def info(self) -> ModelInfo:
        return self.instances[0].info

    def prepare(self, images: Sequence[np.ndarray]) -> Prepared:
        return self.instances[0].prepare(images)

    def infer(self, prepared: Prepared) -> np.ndarray:
        return self.instances[0].infer(prepared)

    def decode(self, raw: np.ndarray, prepared: Prepared) -> list[Detections]:
        return self.instances[0].decode(raw, prepared)

    def input_tensor(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self.instances[0].input_tensor(images)

    def close(self) -> None:
        for detector in self.instances:
            detector.close()


def open_pool(cfg: DetectorConfig, *, max_batch: int, data_dir: Path | None) -> DetectorPool:
    """Load ``cfg.model`` into as many instances as ``cfg`` says or the tuning chooses."""
    path, digest = resolve_pinned(cfg.model, cfg.sha256, cfg.backend)
    backend_name = backend_for_file(path) if cfg.backend == "auto" else cfg.backend
    fixed_instances = cfg.instances if isinstance(cfg.instances, int) else None
    fixed_threads = cfg.threads if isinstance(cfg.threads, int) else None
    cores = tuning.usable_cores()
    if backend_name == "tensorrt":  # a GPU context has no CPU threads to choose; try up to GPU_CONTEXTS
        fixed_threads, cores = 1, GPU_CONTEXTS
    loaded: list[Backend] = []  # the first backend opened: TensorRT's other instances share its engine

    def open_instance(threads: int) -> Backend:
        if backend_name == "tensorrt" and loaded:
            return loaded[0].another_context()  # type: ignore[attr-defined,no-any-return]
        backend = open_backend(backend_name, path, threads=threads)
        if not loaded:
            loaded.append(backend)
        return backend

    first = open_instance(fixed_threads or 1)
    detectors: list[Detector] = []
    try:
        detectors.append(assemble(cfg, path, digest, first))
        if fixed_instances is not None and fixed_threads is not None:
            choice = tuning.Choice(fixed_instances, fixed_threads, max_batch, "configured")
        else:
            choice = _tuned(
                detectors[0], open_instance, cores, max_batch, fixed_instances, fixed_threads, data_dir
            )
        if choice.threads != (fixed_threads or 1):  # the probe instance had other threads: reopen
            detectors.pop().close()
            detectors.append(assemble(cfg, path, digest, open_instance(choice.threads)))
        while len(detectors) < choice.instances:  # sharing the first one's preprocessing
            detectors.append(assemble(cfg, path, digest, open_instance(choice.threads), like=detectors[0]))
    except BaseException:
        for detector in detectors:
            detector.close()
        if not detectors:
            first.close()
        raise
    return DetectorPool(detectors, choice)


def _tuned(
    probe: Detector,
    open_instance: Callable[[int], Backend],
    cores: int,
    max_batch: int,
    instances: int | None,
    threads: int | None,
    data_dir: Path | None,
) -> tuning.Choice:
    info = probe.info
    key = tuning.cache_key(
        sha256=info.sha256,
        backend=info.backend,
        runtime=info.runtime_version,
        cpu=tuning.cpu_model(),
        cores=cores,
        max_batch=max_batch,
        instances=instances,
        threads=threads,
    )
    path = tuning.cache_path(data_dir) if data_dir is not None else None
    if path is not None and (cached := tuning.load_cached(path, key)) is not None:
        return cached
    tensors = sample_tensors(probe, sorted({1, max_batch}))
    measured = tuple(
        tuning.measure(open_instance, tensors, c)
        for c in tuning.candidates(cores, max_batch, instances=instances, threads=threads)
    )
    best = tuning.choose(measured).candidate
    choice = tuning.Choice(best.instances, best.threads, best.batch, "measured", measured)
    if path is not None:
        about = {"model": info.path.name, "cpu": tuning.cpu_model(), "cores": cores, "runtime": info.backend}
        tuning.save_cached(path, key, choice, about)
    return choice


def sample_tensors(
    detector: Detector | DetectorPool,
    batches: Sequence[int],
    images: Sequence[np.ndarray] | None = None,
    count: int = 2,
) -> dict[int, list[np.ndarray]]:
    """``count`` input tensors per batch size for bare runs, from ``images`` taken in turn (default:
    synthetic 640x480 scenes, letterboxed as camera frames are: a scene drawn at a small model's input
    size had no room for its shapes), through the detector's own preprocessing."""
    if images is None:
        from edgeinfer.synthetic import random_scene

        rng = np.random.default_rng(0)
        images = [random_scene(rng, 640, 480)[0] for _ in range(max(batches) * count)]
    return {
        batch: [
            detector.input_tensor([images[(i * batch + j) % len(images)] for j in range(batch)])
            for i in range(count)
        ]
        for batch in batches
    }
