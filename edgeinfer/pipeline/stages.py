"""The three stages, linked by small bounded queues, so the next batch is preprocessed while the current
ones are in the runtime and the previous one is being decoded:

    prepare (cpu thread)  --ready-->  infer (an instance's thread)  --in order-->  finish (cpu thread)

The detector may have several instances (runtime objects of one model, each on its own thread; they share
the preprocessing and decoding, :mod:`edgeinfer.detect.pool`). A prepared batch goes to an idle instance
(the lowest-numbered) if there is one; otherwise it waits in a ready queue, and the first instance to
finish its batch takes it from there on its own thread, without a round trip through the event loop (on a
busy 2-core box that hop took 0.2 ms p50 and 2-2.5 ms p90, and skipping it gave the 4-camera pipeline 6 %
more frames: benchmarks/RESULTS.md). A batch is taken from the batcher only while fewer than instances + 1
are prepared or in a runtime (so frames wait in the batcher, where newer ones replace them, not behind a
busy runtime). Batches may finish out of order on different instances; the finish stage takes them in
the order they were taken, so a camera's outcomes are built, and delivered, in the order of its frames.

Decode, filters, the event policy and the outcome (event JSON, line protocol) all run on a worker
thread; the event loop only routes jobs and hands finished outcomes on.

A single frame that finds an instance idle (a camera at its own pace, not a backlog) skips the hand-offs:
prepare, infer and decode run in one call on that instance's thread, since each hop costs more than the
work it would overlap (~0.5 ms against 0.1-0.3 ms of prepare or decode for one frame). Its outcome is
built there too when no earlier job is still unfinished (so two outcomes are never built at once);
otherwise on the cpu thread in job order.

An exception from the detector (prepare, infer or decode) or from building the outcomes fails that job
only: it is delivered in its place in the order as a :class:`Finished` with ``error`` set and no
outcomes, and the stages go on with the next batch. The pipeline counts and reports it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeinfer.detect.detections import Detections
from edgeinfer.pipeline.outcomes import OutcomeBuilder
from edgeinfer.pipeline.priority import lower_this_thread
from edgeinfer.pipeline.types import DetectorLike, Outcome, StageTimes
from edgeinfer.sources.frame import Frame


@dataclass(frozen=True, slots=True)
class Finished:
    """A job's results, one per frame in the frames' order; ``done``: the clock when they were ready."""

    frames: tuple[Frame, ...]
    outcomes: tuple[Outcome, ...]  # empty when ``error`` is set
    times: tuple[StageTimes, ...]  # empty when ``error`` is set
    done: float
    error: BaseException | None = None  # what the detector (or the outcome builder) raised on this job


@dataclass(slots=True)
class Job:
    frames: list[Frame]
    dispatched: float
    inline: bool = False  # prepare and decode on the instance's thread (a single frame, an idle instance)
    build_inline: bool = False  # ... and build the outcome there (no earlier job unfinished)
    prepared: Any = None
    prep_s: float = 0.0
    infer_s: float = 0.0
    decode_s: float = 0.0
    results: list[Detections] | None = None
    finished: Finished | None = None
    error: BaseException | None = None
    inferred: asyncio.Future[np.ndarray] | None = None  # the runtime's output, set on the event loop


class Stages:
    """Runs batches through ``detector`` and ``builder``; :meth:`run` returns when the batches end."""

    def __init__(
        self,
        detector: DetectorLike[Any],
        builder: OutcomeBuilder,
        *,
        instances: Sequence[DetectorLike[Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        nice: int = 0,
    ) -> None:
        """``detector`` prepares and decodes; ``instances`` (default: the detector alone) infer, and each
        accepts what ``detector.prepare`` gives. ``nice``: how much nicer the instances' threads run than
        the rest (:mod:`edgeinfer.pipeline.priority`)."""
        self.detector, self.builder, self._clock = detector, builder, clock
        self.instances = list(instances) if instances else [detector]
        self.nice = nice
        self._cpu = ThreadPoolExecutor(1, thread_name_prefix="edgeinfer.cpu")
        self._workers = [
            ThreadPoolExecutor(
                1,
                thread_name_prefix="edgeinfer.infer" + (f".{i}" if i else ""),
                initializer=lower_this_thread,
                initargs=(nice,),
            )
            for i in range(len(self.instances))
        ]
        # Which instances are idle and which prepared jobs wait for one: read and changed under the lock,
        # by the loop (dispatch) and by the instances' threads (take the next job, or go idle).
        self._lock = threading.Lock()
        self._idle = set(range(len(self.instances)))
        self._ready: deque[Job] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Batches taken and not done in a runtime: one per instance plus one prepared ahead.
        self._slots = asyncio.Semaphore(len(self.instances) + 1)
        self._unfinished_jobs = 0  # dispatched, outcomes not built yet
        self.jobs = 0
        self.inline_jobs = 0
        self.failed_jobs = 0
        self.jobs_per_instance = [0] * len(self.instances)

    async def run(
        self,
        next_batch: Callable[[], Awaitable[list[Frame]]],
        deliver: Callable[[Finished], Awaitable[None]],
        *,
        taken: Callable[[list[Frame]], None] = lambda frames: None,
        stop: asyncio.Event | None = None,
        max_frames: int | None = None,
    ) -> None:
        """Take batches until ``next_batch`` gives an empty one, ``stop`` is set or ``max_frames`` were
        taken; every batch taken is finished and delivered before this returns."""
        stop = stop or asyncio.Event()
        self._loop = asyncio.get_running_loop()
        # The jobs in dispatch order (each with its ``inferred`` future unless it failed before).
        finish_q: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=len(self.instances) + 1)
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(
                    self._prepare_loop(next_batch, taken, stop, max_frames, finish_q),
                    name="edgeinfer.prepare",
                )
                tg.create_task(self._finish_loop(finish_q, deliver), name="edgeinfer.finish")
        finally:
            self._cpu.shutdown(wait=False)
            for worker in self._workers:
                worker.shutdown(wait=False)

    async def _prepare_loop(
        self,
        next_batch: Callable[[], Awaitable[list[Frame]]],
        taken: Callable[[list[Frame]], None],
        stop: asyncio.Event,
        max_frames: int | None,
        finish_q: asyncio.Queue[Job | None],
    ) -> None:
        loop = asyncio.get_running_loop()
        count = 0
        try:
            while not stop.is_set():
                if max_frames is not None and count >= max_frames:
                    break  # --max-frames: take no more; what is in flight still finishes
                await self._slots.acquire()  # every instance busy and one batch waiting: take none
                frames = await next_batch()
                if not frames:
                    self._slots.release()
                    break
                count += len(frames)
                taken(frames)
                job = Job(frames, self._clock())
                self.jobs += 1
                if len(frames) == 1 and self._idle and not self._ready:  # racy reads: a hint is enough
                    job.inline = True
                    job.build_inline = not self._unfinished_jobs
                    self.inline_jobs += 1
                else:
                    try:
                        job.prepared = await loop.run_in_executor(
                            self._cpu, self.detector.prepare, [f.image for f in frames]
                        )
                    except Exception as exc:  # this batch fails; the next one is tried
                        job.error = exc
                    job.prep_s = self._clock() - job.dispatched
                self._unfinished_jobs += 1
                if job.error is None:
                    job.inferred = loop.create_future()
                    self._dispatch(job)
                else:
                    self._slots.release()
                await finish_q.put(job)
        finally:
            await finish_q.put(None)

    def _dispatch(self, job: Job) -> None:
        """Start ``job`` on the lowest-numbered idle instance, or leave it for the first one to finish."""
        with self._lock:
            if not self._idle:
                self._ready.append(job)
                return
            index = min(self._idle)
            self._idle.discard(index)
        self._workers[index].submit(self._serve, index, job)

    def _serve(self, index: int, job: Job) -> None:
        """On instance ``index``'s thread: run ``job``, then every job that is ready, then go idle."""
        while True:
            self.jobs_per_instance[index] += 1
            try:
                raw, error = self._run_job(index, job), None
            except BaseException as exc:  # delivered in the job's place; the instance goes on
                raw, error = None, exc
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._inferred, job, raw, error)
            with self._lock:
                if not self._ready:
                    self._idle.add(index)
                    return
                job = self._ready.popleft()

    def _inferred(self, job: Job, raw: np.ndarray | None, error: BaseException | None) -> None:
        """On the loop: the job's runtime call is over; its slot is free for the next batch."""
        self._slots.release()
        assert job.inferred is not None
        if job.inferred.cancelled():  # the finish stage was cancelled while waiting for it (a hard stop)
            return
        if raw is None:
            assert error is not None
            job.inferred.set_exception(error)
        else:
            job.inferred.set_result(raw)

    def _run_job(self, index: int, job: Job) -> np.ndarray:
        """On the instance's thread: the runtime call, plus prepare, decode (and the outcome) inline."""
        if job.inline:
            start = self._clock()
            job.prepared = self.detector.prepare([f.image for f in job.frames])
            job.prep_s = self._clock() - start
        start = self._clock()
        raw = self.instances[index].infer(job.prepared)
        job.infer_s = self._clock() - start
        if job.inline:
            start = self._clock()
            job.results = self._decode(job, raw)
            job.decode_s = self._clock() - start
            if job.build_inline:
                job.finished = self._build(job, start)
        return raw

    async def _finish_loop(
        self,
        finish_q: asyncio.Queue[Job | None],
        deliver: Callable[[Finished], Awaitable[None]],
    ) -> None:
        loop = asyncio.get_running_loop()
        while (job := await finish_q.get()) is not None:
            raw = None
            if job.inferred is not None:
                try:
                    raw = await job.inferred
                except Exception as exc:
                    job.error = exc
            if job.error is None and job.finished is None:
                assert raw is not None
                post_start = self._clock() - job.decode_s
                try:
                    job.finished = await loop.run_in_executor(self._cpu, self._finish, job, raw, post_start)
                except Exception as exc:
                    job.error = exc
            self._unfinished_jobs -= 1
            if job.error is not None:
                self.failed_jobs += 1
                job.finished = Finished(tuple(job.frames), (), (), self._clock(), job.error)
            assert job.finished is not None
            await deliver(job.finished)

    def _finish(self, job: Job, raw: np.ndarray, post_start: float) -> Finished:
        """On the cpu thread: decode (unless done inline) and build the outcomes."""
        if job.results is None:
            job.results = self._decode(job, raw)
        return self._build(job, post_start)

    def _decode(self, job: Job, raw: np.ndarray) -> list[Detections]:
        decoded = self.detector.decode(raw, job.prepared)
        return [self.builder.filter(f.camera, d) for f, d in zip(job.frames, decoded, strict=True)]

    def _build(self, job: Job, post_start: float) -> Finished:
        assert job.results is not None
        done = self._clock()
        size = len(job.frames)
        times = tuple(
            StageTimes(
                queue=(job.dispatched - frame.mono) * 1e3,
                preprocess=job.prep_s * 1e3,
                inference=job.infer_s * 1e3,
                postprocess=(done - post_start) * 1e3,
                e2e=(done - frame.mono) * 1e3,
            )
            for frame in job.frames
        )
        outcomes = tuple(
            self.builder.build(frame, dets, t, size)
            for frame, dets, t in zip(job.frames, job.results, times, strict=True)
        )
        return Finished(tuple(job.frames), outcomes, times, done)
