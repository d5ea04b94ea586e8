"""The stages on their own: a fake detector that advances a fake clock instead of sleeping, batches from a
script. Stage times come out exact; which thread does what, and in which order, is checked directly."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from edgeinfer.config import CameraConfig
from edgeinfer.detect.detections import Detections
from edgeinfer.pipeline.outcomes import OutcomeBuilder
from edgeinfer.pipeline.priority import instance_nice
from edgeinfer.pipeline.stages import Finished, Stages
from edgeinfer.sources.frame import Frame

LABELS = ["circle", "square"]
CPU, INFER = "edgeinfer.cpu_0", "edgeinfer.infer_0"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


class ClockDetector:
    """prepare, infer and decode take 1, 5 and 2 ms of fake time; each image's pixel [0, 0, 0] is the
    class id of the one detection it gets. Records the thread of every call."""

    labels = LABELS
    info = SimpleNamespace(name="fake", backend="fake")

    def __init__(self, clock: FakeClock, gate: threading.Event | None = None) -> None:
        self.clock = clock
        self.calls: list[tuple[str, int, str]] = []
        self.gate = gate  # when set: decoding a batch of 2 waits for it
        self.gated = threading.Event()  # ... and this says it is waiting

    def _call(self, name: str, n: int, seconds: float) -> None:
        self.calls.append((name, n, threading.current_thread().name))
        self.clock.advance(seconds)

    def prepare(self, images):
        self._call("prepare", len(images), 0.001)
        return np.array([int(image[0, 0, 0]) for image in images])

    def infer(self, prepared):
        self._call("infer", len(prepared), 0.005)
        return prepared.copy()

    def decode(self, raw, prepared):
        if self.gate is not None and len(raw) == 2:
            self.gated.set()
            assert self.gate.wait(5)
        self._call("decode", len(raw), 0.002)
        return [
            Detections(np.array([[0, 0, 4, 4]], np.float32), np.array([0.9], np.float32), np.array([c]))
            for c in raw.tolist()
        ]


class RecordingBuilder(OutcomeBuilder):
    """Notes the thread each outcome is built on (and which frame it was)."""

    def __init__(self, cameras=("a", "b"), events="every_frame") -> None:
        configs = [CameraConfig(name=n, source=0, events=events, context=["sensors/x"]) for n in cameras]
        super().__init__(configs, device="box", labels=LABELS, model="fake", context=self.context)
        self.threads: list[tuple[str, int, str]] = []
        self.context_threads: list[str] = []

    def context(self, series: list[str]) -> dict[str, object]:
        self.context_threads.append(threading.current_thread().name)
        return {s: 1.5 for s in series}

    def build(self, frame, dets, times, batch_size):
        self.threads.append((frame.camera, frame.seq, threading.current_thread().name))
        return super().build(frame, dets, times, batch_size)


def frame(camera: str, seq: int, mono: float, cls: int = 0) -> Frame:
    image = np.zeros((4, 4, 3), np.uint8)
    image[0, 0, 0] = cls
    return Frame(camera, seq, image, 1_764_201_600_000_000_000 + seq, mono)


def test_stage_times_are_exact_and_the_loop_only_routes():
    """One job at a time: a single frame goes inline (all on the infer thread), a pair goes through the
    cpu thread for prepare and finish. Outcomes are built where decode runs, never on the loop."""
    clock = FakeClock()
    detector = ClockDetector(clock)
    builder = RecordingBuilder()
    stages = Stages(detector, builder, clock=clock)
    script = [[("a", 0)], [("a", 1), ("b", 0)], [("b", 1)]]
    delivered: list[Finished] = []
    out = asyncio.Event()

    async def next_batch():
        while len(delivered) < 3 - len(script):  # lock step: the next batch once the last one is out
            out.clear()
            await out.wait()
        if not script:
            return []
        # Each frame waited 3 ms for its batch.
        return [frame(cam, seq, clock.now - 0.003) for cam, seq in script.pop(0)]

    async def deliver(finished: Finished) -> None:
        delivered.append(finished)
        out.set()

    async def main():
        await stages.run(next_batch, deliver)
        return threading.current_thread().name

    loop_thread = asyncio.run(main())
    assert [[(f.camera, f.seq) for f in d.frames] for d in delivered] == [
        [("a", 0)],
        [("a", 1), ("b", 0)],
        [("b", 1)],
    ]
    for d in delivered:
        for t in d.times:
            assert (t.queue, t.preprocess, t.inference, t.postprocess, t.e2e) == pytest.approx(
                (3.0, 1.0, 5.0, 2.0, 11.0)
            )
    assert detector.calls == [
        ("prepare", 1, INFER),
        ("infer", 1, INFER),
        ("decode", 1, INFER),
        ("prepare", 2, CPU),
        ("infer", 2, INFER),
        ("decode", 2, CPU),
        ("prepare", 1, INFER),
        ("infer", 1, INFER),
        ("decode", 1, INFER),
    ]
    assert builder.threads == [("a", 0, INFER), ("a", 1, CPU), ("b", 0, CPU), ("b", 1, INFER)]
    assert builder.context_threads == [INFER, CPU, CPU, INFER]  # every frame had an event
    assert loop_thread not in builder.context_threads
    assert (stages.jobs, stages.inline_jobs) == (3, 2)
    event = delivered[1].outcomes[1].event
    assert event is not None and event.camera == "b"
    assert '"latency_ms":{"e2e":11.0,"queue":3.0,"preprocess":1.0,"inference":5.0,"postprocess":2.0}' in (
        event.body
    )


def test_inline_frame_behind_an_unfinished_job_of_its_camera_is_built_after_it():
    """a1 finds the runtime idle (inline) while a0 is still being decoded on the cpu thread: a1's outcome
    must wait its turn there, so a camera's event policy sees its frames in order."""
    clock = FakeClock()
    gate = threading.Event()
    detector = ClockDetector(clock, gate)
    builder = RecordingBuilder(events="on_change")
    # on_change, circles only: in order a1 is no change (no event); built before a0, a1 would get it.
    stages = Stages(detector, builder, clock=clock)
    delivered: list[Finished] = []
    step = 0

    async def next_batch():
        nonlocal step
        step += 1
        if step == 1:
            return [frame("a", 0, clock.now, cls=0), frame("b", 0, clock.now, cls=0)]
        if step == 2:
            assert await asyncio.to_thread(detector.gated.wait, 5)  # a0/b0 are in decode
            return [frame("a", 1, clock.now, cls=0)]
        gate.set()
        return []

    async def deliver(finished: Finished) -> None:
        delivered.append(finished)

    asyncio.run(asyncio.wait_for(stages.run(next_batch, deliver), 10))
    assert [[(f.camera, f.seq) for f in d.frames] for d in delivered] == [[("a", 0), ("b", 0)], [("a", 1)]]
    assert (stages.jobs, stages.inline_jobs) == (2, 1)
    assert ("prepare", 1, INFER) in detector.calls and ("decode", 1, INFER) in detector.calls
    assert builder.threads == [("a", 0, CPU), ("b", 0, CPU), ("a", 1, CPU)]  # a1 after a0, on the cpu
    assert [o.event is not None for d in delivered for o in d.outcomes] == [True, True, False]


def test_max_frames_takes_no_more_but_finishes_what_it_took():
    clock = FakeClock()
    stages = Stages(ClockDetector(clock), RecordingBuilder(), clock=clock)
    taken: list[int] = []
    delivered: list[Finished] = []
    seq = 0

    async def next_batch():
        nonlocal seq
        await asyncio.sleep(0)
        seq += 2
        return [frame("a", seq - 2, clock.now), frame("b", seq - 2, clock.now)]

    async def deliver(finished: Finished) -> None:
        delivered.append(finished)

    asyncio.run(stages.run(next_batch, deliver, taken=lambda f: taken.append(len(f)), max_frames=5))
    assert taken == [2, 2, 2]  # the batch that reaches 5 is the last one taken
    assert sum(len(d.frames) for d in delivered) == 6


class GatedInstance:
    """An instance whose runs wait for its gate (when it has one); notes the thread of each run."""

    def __init__(self, detector: ClockDetector, gate: threading.Event | None = None) -> None:
        self.detector, self.gate = detector, gate
        self.running = threading.Event()
        self.runs: list[tuple[int, str]] = []

    def infer(self, prepared):
        self.runs.append((len(prepared), threading.current_thread().name))
        self.running.set()
        if self.gate is not None:
            assert self.gate.wait(5)
        return prepared.copy()


def test_a_batch_goes_to_the_idle_instance_and_outcomes_keep_their_order():
    """Instance 0 is stuck on the first batch; the second batch runs on instance 1 meanwhile and is done
    first, yet it is built and delivered after the first (a camera's frames stay in order)."""
    clock = FakeClock()
    detector = ClockDetector(clock)
    gate = threading.Event()
    stuck, free = GatedInstance(detector, gate), GatedInstance(detector)
    builder = RecordingBuilder(events="every_frame")
    stages = Stages(detector, builder, instances=[stuck, free], clock=clock)
    delivered: list[Finished] = []
    step = 0

    async def next_batch():
        nonlocal step
        step += 1
        if step == 1:
            return [frame("a", 0, clock.now), frame("b", 0, clock.now)]
        if step == 2:
            assert await asyncio.to_thread(stuck.running.wait, 5)
            return [frame("a", 1, clock.now), frame("b", 1, clock.now)]
        # The second batch ran to its end while the first is still in the runtime.
        assert await asyncio.to_thread(lambda: _wait_for(lambda: len(free.runs) == 1))
        assert not delivered
        gate.set()
        return []

    async def deliver(finished: Finished) -> None:
        delivered.append(finished)

    asyncio.run(asyncio.wait_for(stages.run(next_batch, deliver), 10))
    assert [[(f.camera, f.seq) for f in d.frames] for d in delivered] == [
        [("a", 0), ("b", 0)],
        [("a", 1), ("b", 1)],
    ]
    assert stuck.runs == [(2, INFER)] and free.runs == [(2, "edgeinfer.infer.1_0")]
    assert stages.jobs_per_instance == [1, 1]
    assert [(c, s) for c, s, _ in builder.threads] == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]
    assert all(d.error is None for d in delivered)


class PairBatches:
    """``next_batch`` for the stages: ``count`` batches of two frames, (a, n) and (b, n) for n = 1, 2, ...,
    then none. ``taken`` says how many were taken so far."""

    def __init__(self, clock: FakeClock, count: int) -> None:
        self.clock, self.count, self.taken = clock, count, 0

    async def __call__(self) -> list[Frame]:
        if self.taken == self.count:
            return []
        self.taken += 1
        return [frame("a", self.taken, self.clock.now), frame("b", self.taken, self.clock.now)]


def run_watched(stages: Stages, next_batch, deliver, watch) -> None:  # type: ignore[no-untyped-def]
    """Run the stages with ``watch()`` as a task beside them; both must end within 10 s."""

    async def main():
        watcher = asyncio.create_task(watch())
        await stages.run(next_batch, deliver)
        await watcher

    asyncio.run(asyncio.wait_for(main(), 10))


def test_no_batch_is_taken_while_every_instance_is_busy():
    """Frames wait in the batcher (where newer ones replace them), not behind a busy runtime: with both
    instances stuck, at most one more batch is taken (prepared, waiting for an instance)."""
    clock = FakeClock()
    detector = ClockDetector(clock)
    gate = threading.Event()
    instances = [GatedInstance(detector, gate), GatedInstance(detector, gate)]
    stages = Stages(detector, RecordingBuilder(), instances=instances, clock=clock)
    batches = PairBatches(clock, 6)
    delivered: list[Finished] = []

    async def watch():
        await asyncio.sleep(0.3)  # time enough to take more, if the stages would
        assert batches.taken == 3, batches.taken  # two in the runtimes, one prepared and waiting
        assert all(i.running.is_set() for i in instances)
        gate.set()

    async def deliver(finished: Finished) -> None:
        delivered.append(finished)

    run_watched(stages, batches, deliver, watch)
    assert [d.frames[0].seq for d in delivered] == [1, 2, 3, 4, 5, 6]


def _wait_for(condition, timeout: float = 5.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_a_finishing_instance_takes_the_next_prepared_batch_without_the_event_loop():
    """With both instances busy the third batch waits, prepared. The instance that finishes first starts it
    on its own thread at once, even while the event loop is busy (here: blocked outright), so no round trip
    through the loop sits between one batch and the next."""
    clock = FakeClock()
    detector = ClockDetector(clock)
    gates = [threading.Event(), threading.Event()]
    instances = [GatedInstance(detector, gates[0]), GatedInstance(detector, gates[1])]
    stages = Stages(detector, RecordingBuilder(), instances=instances, clock=clock)
    batches = PairBatches(clock, 3)
    delivered: list[Finished] = []
    took_it_with_the_loop_blocked: list[bool] = []

    async def watch():
        assert await asyncio.to_thread(
            lambda: _wait_for(lambda: batches.taken == 3 and len(instances[1].runs) == 1)
        )
        await asyncio.sleep(0.05)  # the third batch is prepared and waiting for an instance
        gates[0].set()
        # Blocks the event loop's thread: only the instances' own threads can move now.
        took_it_with_the_loop_blocked.append(_wait_for(lambda: len(instances[0].runs) == 2))
        gates[1].set()

    async def deliver(finished: Finished) -> None:
        delivered.append(finished)

    run_watched(stages, batches, deliver, watch)
    assert took_it_with_the_loop_blocked == [True]
    assert [d.frames[0].seq for d in delivered] == [1, 2, 3]
    assert stages.jobs_per_instance == [2, 1]
    assert all(d.error is None for d in delivered)


def test_a_hard_stop_while_a_batch_is_in_a_runtime_leaves_no_error_behind():
    """The stages are cancelled while an instance is still running a batch; when that run ends, its result
    has nobody waiting for it and is dropped quietly (no error in the event loop's handler)."""
    clock = FakeClock()
    detector = ClockDetector(clock)
    gate = threading.Event()
    instance = GatedInstance(detector, gate)
    stages = Stages(detector, RecordingBuilder(), instances=[instance], clock=clock)
    errors: list[dict] = []

    async def next_batch():
        if instance.runs:
            await asyncio.sleep(3600)  # nothing more comes
        return [frame("a", 0, clock.now), frame("b", 0, clock.now)]

    async def deliver(finished: Finished) -> None:
        raise AssertionError("nothing is delivered after a hard stop")

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
        task = asyncio.create_task(stages.run(next_batch, deliver))
        assert await asyncio.to_thread(instance.running.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.set()  # the run ends now, with the loop still running
        assert await asyncio.to_thread(lambda: _wait_for(lambda: stages.jobs_per_instance == [1]))
        await asyncio.sleep(0.1)  # the instance's result reaches the loop

    asyncio.run(asyncio.wait_for(main(), 10))
    assert errors == []


class NiceInstance(GatedInstance):
    """Notes the niceness of the thread each run is on."""

    def __init__(self, detector: ClockDetector) -> None:
        super().__init__(detector)
        self.nice: list[int] = []

    def infer(self, prepared):
        self.nice.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return super().infer(prepared)


@pytest.mark.skipif(sys.platform != "linux", reason="niceness per thread is Linux's")
def test_the_instances_threads_run_nicer_than_the_threads_that_feed_them():
    clock = FakeClock()
    detector = ClockDetector(clock)
    prepared_at: list[int] = []
    prepare = detector.prepare

    def noting_prepare(images):
        prepared_at.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return prepare(images)

    detector.prepare = noting_prepare  # type: ignore[method-assign]
    instances = [NiceInstance(detector), NiceInstance(detector)]
    stages = Stages(detector, RecordingBuilder(), instances=instances, clock=clock, nice=5)
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    asyncio.run(asyncio.wait_for(stages.run(PairBatches(clock, 6), _discard), 10))
    ran = instances[0].nice + instances[1].nice
    assert len(ran) == 6 and set(ran) == {min(19, base + 5)}
    assert prepared_at and set(prepared_at) == {base}  # the cpu thread, like the loop, is left as it was
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base


def test_nice_0_leaves_the_instances_threads_as_they_were():
    clock = FakeClock()
    detector = ClockDetector(clock)
    instance = NiceInstance(detector)
    stages = Stages(detector, RecordingBuilder(), instances=[instance], clock=clock)
    asyncio.run(asyncio.wait_for(stages.run(PairBatches(clock, 2), _discard), 10))
    assert instance.nice == [os.getpriority(os.PRIO_PROCESS, 0)] * 2


async def _discard(finished: Finished) -> None:
    assert finished.error is None


def test_only_single_threaded_instances_are_niced():
    assert instance_nice(10, 1) == 10 and instance_nice(10, None) == 10 and instance_nice(3, 1) == 3
    assert instance_nice(10, 2) == 0 and instance_nice(10, 4) == 0
