"""An exception inside the detector on one batch: those frames are dropped and counted (reason
``detector_error``), the pipeline goes on; N batches in a row failing turn /healthz red until one
succeeds. Real capture threads, batcher and stages; the detector is ``FailingDetector``, a FAKE that
raises on purpose (a real runtime cannot be made to fail on demand)."""

from __future__ import annotations

import logging
import re
from collections import Counter

import pytest
from test_pipeline import FakeDetector, FakeReader, Recorder, config, events_of, run

from edgeinfer.app.metrics import Metrics
from edgeinfer.pipeline.pipeline import MAX_FAILED_BATCHES


class FailingDetector(FakeDetector):
    """FAKE detector: raises in ``stage`` (prepare / infer / decode) on the batches ``fails(n)`` says,
    n counting batches from 0; records the size of every batch it was given."""

    def __init__(self, stage: str, fails) -> None:
        super().__init__()
        self.stage, self.fails = stage, fails
        self.given: list[int] = []
        self.failed: list[int] = []  # sizes of the batches that raised
        self._n = {"prepare": 0, "infer": 0, "decode": 0}

    def _maybe_raise(self, stage: str, size: int) -> None:
        n = self._n[stage]
        self._n[stage] += 1
        if stage == self.stage and self.fails(n):
            self.failed.append(size)
            raise RuntimeError(f"runtime failed on batch {n}")

    def prepare(self, images):
        self.given.append(len(images))
        self._maybe_raise("prepare", len(images))
        return super().prepare(images)

    def infer(self, prepared):
        self._maybe_raise("infer", len(prepared))
        return super().infer(prepared)

    def decode(self, raw, prepared):
        self._maybe_raise("decode", len(raw))
        return super().decode(raw, prepared)


@pytest.mark.parametrize("stage", ["prepare", "infer", "decode"])
def test_a_batch_that_raises_drops_its_frames_counts_them_and_the_pipeline_goes_on(tmp_path, stage, caplog):
    cfg = config(tmp_path, [{"events": "every_frame"}] * 2, max_batch_size=2)
    readers = {f"cam{i}": FakeReader() for i in range(2)}
    detector = FailingDetector(stage, lambda n: n % 3 == 1)  # every third batch
    recorder, metrics = Recorder(), Metrics()

    class Both:
        def __getattr__(self, name):
            def call(*args):
                getattr(recorder, name)(*args)
                getattr(metrics, name)(*args)

            return call

    with caplog.at_level(logging.WARNING, logger="edgeinfer.pipeline"):
        p, outcomes, _ = run(cfg, detector, readers, observer=Both(), until=lambda p: p.frames_total >= 100)
    dropped = sum(p.detector_drops.values())
    assert detector.failed and dropped == sum(detector.failed)
    assert p.failed_batches == len(detector.failed)
    assert p.frames_total + dropped == sum(detector.given)  # every frame taken: processed or dropped
    assert len(outcomes) == p.frames_total  # no outcome for a dropped frame
    assert sum(n for (_c, reason), n in recorder.dropped.items() if reason == "detector_error") == dropped
    assert sum(
        metrics.registry.get_sample_value("edgeinfer_frames_dropped_total", {"camera": c, "reason": "detector_error"}) or 0
        for c in ("cam0", "cam1")
    ) == dropped  # fmt: skip
    status = p.status()
    assert sum(status.drops.values()) == dropped  # in the stats' drops too
    for camera in ("cam0", "cam1"):
        seqs = [e["seq"] for e in events_of(outcomes) if e["camera"] == camera]
        assert seqs == sorted(seqs)  # order kept around the holes
    assert p.healthy()[0]  # never MAX_FAILED_BATCHES in a row
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors and "failed, dropped (RuntimeError: runtime failed on batch" in errors[0].getMessage()
    assert errors[0].exc_info is not None  # the traceback, once per failure streak


def test_failing_batches_in_a_row_turn_healthz_red_until_one_succeeds(tmp_path, caplog):
    cfg = config(tmp_path, [{"events": "every_frame"}], max_batch_size=1)
    state = {"failing": True}
    detector = FailingDetector("infer", lambda n: state["failing"])
    seen = {}

    def until(p):
        if "red" not in seen:
            if p.failed_in_a_row < MAX_FAILED_BATCHES + 2:
                return False
            seen["red"] = p.healthy()
            seen["frames_when_red"] = p.frames_total
            state["failing"] = False
            return False
        if p.frames_total < 10:
            return False
        seen["green"] = p.healthy()
        return True

    with caplog.at_level(logging.WARNING, logger="edgeinfer.pipeline"):
        p, outcomes, _ = run(cfg, detector, {"cam0": FakeReader()}, until=until)
    ok, why = seen["red"]
    failed = re.match(r"detector failing: (\d+) batches in a row raised", why)
    assert not ok and failed and int(failed.group(1)) >= MAX_FAILED_BATCHES + 2, why
    assert "RuntimeError: runtime failed on batch" in why
    assert seen["frames_when_red"] == 0
    assert seen["green"][0], seen["green"]
    assert p.failed_in_a_row == 0 and len(outcomes) == p.frames_total >= 10
    messages = Counter(
        "first" if "going on with the next" in m else "red" if "/healthz reports unhealthy" in m
        else "recovered" if "recovered after" in m else "other"
        for m in (r.getMessage() for r in caplog.records)
    )  # fmt: skip
    assert messages == {"first": 1, "red": 1, "recovered": 1}  # per state change, not per batch
