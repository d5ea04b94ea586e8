"""Tracking accuracy on synthetic scenes with ground-truth identities, through the bundled INT8 model and the
real runtime, scored by motmetrics (the CLEAR MOT and identity metrics of the MOTChallenge tools).

The scenes are the synthetic source's (4 shapes each, bouncing off the edges, crossing and hiding each
other; an object more than 60% hidden is not in the truth of that frame), 300 frames at 10 fps, seeds 1-6.
The README reports what this measures (IDF1 0.923, MOTA 0.957 overall at the defaults); the floors here sit
a little below it so a change that costs accuracy fails.
"""

from __future__ import annotations

import motmetrics as mm
import numpy as np
import pytest

from edgeinfer.config import DetectorConfig
from edgeinfer.detect.build import open_detector
from edgeinfer.synthetic import MovingScene
from edgeinfer.tracking.assign import iou_matrix
from edgeinfer.tracking.tracker import ByteTracker, TrackerSettings

SEEDS = range(1, 7)
FRAMES, FPS, MATCH_IOU = 300, 10.0, 0.5
IDF1_FLOOR, MOTA_FLOOR = 0.90, 0.94


def accumulate(seed: int, detector, settings: TrackerSettings):  # type: ignore[no-untyped-def]
    scene = MovingScene(seed, 640, 480, 4)
    tracker = ByteTracker(settings)
    acc = mm.MOTAccumulator(auto_id=True)
    image = np.empty((480, 640, 3), np.uint8)
    for i in range(FRAMES):
        truth, _, truth_ids = scene.render_truth(i, image)
        step = tracker.update(detector.detect([image])[0], i / FPS)
        seen = [t for t in step.tracks if t.missed == 0]  # what a subscriber is told is there now
        boxes = np.array([t.box for t in seen], np.float64).reshape(-1, 4)
        iou = iou_matrix(truth.astype(np.float64), boxes)
        # motmetrics' own iou_matrix calls np.asfarray, gone in NumPy 2: the distances are given here
        acc.update(truth_ids.tolist(), [t.number for t in seen], np.where(iou >= MATCH_IOU, 1 - iou, np.nan))
    return acc


@pytest.mark.slow
def test_idf1_and_mota_on_synthetic_scenes_stay_above_the_floors():
    # the daemon's decoder keeps boxes from the tracking low_conf (0.1): edgeinfer.tracking.decoder_conf
    detector = open_detector(DetectorConfig(conf=0.1, threads=2))
    try:
        accs = [accumulate(seed, detector, TrackerSettings()) for seed in SEEDS]
    finally:
        detector.close()
    summary = mm.metrics.create().compute_many(
        accs,
        metrics=["idf1", "mota", "num_switches"],
        names=[f"seed{s}" for s in SEEDS],
        generate_overall=True,
    )
    overall = summary.loc["OVERALL"]
    assert overall["idf1"] >= IDF1_FLOOR, summary.to_string()
    assert overall["mota"] >= MOTA_FLOOR, summary.to_string()
    assert (summary["mota"] >= 0.9).all(), summary.to_string()  # no scene falls apart
