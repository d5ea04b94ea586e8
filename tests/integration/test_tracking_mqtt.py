"""Tracking end to end against the real Mosquitto: a daemon on a synthetic scene (the bundled INT8 model,
the real runtime) publishes the lifecycle on {camera}/objects, retained counts, detections with track ids,
and Home Assistant discovery; a plain paho subscriber checks them against the schemas and the scene's truth.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import paho.mqtt.publish as paho_publish
import pytest
from mqtt_helpers import Subscriber

from edgeinfer.app.daemon import Daemon
from edgeinfer.config import CameraConfig, Config, HomeAssistantConfig, HTTPConfig, MQTTConfig
from edgeinfer.synthetic import MovingScene
from edgeinfer.tracking.assign import iou_matrix

pytestmark = pytest.mark.integration

DEVICE, SEED, OBJECTS, FRAMES = "trk1", 3, 4, 150


def _config(broker, prefix: str, data_dir: Path, discovery: str) -> Config:  # type: ignore[no-untyped-def]
    camera = CameraConfig.model_validate(
        {
            "name": "yard",
            "source": {"type": "synthetic", "seed": SEED, "objects": OBJECTS},
            "fps": 20,
            "events": "every_frame",
            "zones": {"left": [[0, 0], [320, 0], [320, 480], [0, 480]]},
            "lines": {"middle": [[320, 0], [320, 480]]},
        }
    )
    return Config(
        device=DEVICE,
        data_dir=data_dir,
        cameras=[camera],
        mqtt=MQTTConfig(host=broker.host, port=broker.port, client_id=f"pub-{prefix}", topic_prefix=prefix),
        homeassistant=HomeAssistantConfig(discovery_prefix=discovery),
        http=HTTPConfig(enabled=False),
    )


def test_lifecycle_counts_and_discovery_through_the_broker(broker, tmp_path: Path, schemas) -> None:  # type: ignore[no-untyped-def]
    prefix = f"t{uuid.uuid4().hex[:8]}"
    discovery = f"ha{uuid.uuid4().hex[:6]}"
    node = f"edgeinfer_{DEVICE}"
    # an entity of a camera removed from the config, retained from an earlier run
    stale = f"{discovery}/sensor/{node}/gone_circle_count/config"
    paho_publish.single(stale, '{"name": "gone circle count"}', qos=1, retain=True, port=broker.port)
    sub = Subscriber(broker.port, [f"{prefix}/#", f"{discovery}/#"], client_id=f"sub-{prefix}")
    try:
        assert sub.wait_for(lambda ms: any(t == stale for t, _, _ in ms), 5)
        daemon = Daemon(_config(broker, prefix, tmp_path, discovery), max_frames=FRAMES, handle_signals=False)
        summary = asyncio.run(daemon.run())
        assert summary.frames == FRAMES
        base = f"{prefix}/{DEVICE}/yard"
        assert sub.wait_for(lambda ms: any(t == stale and p == b"" for t, p, _ in ms), 10)
        assert sub.wait_for(
            lambda ms: sum(t == f"{base}/objects" and b'"end"' in p for t, p, _ in ms) >= 4, 10
        )
        messages = sub.snapshot()
    finally:
        sub.close()

    # --- lifecycle: valid, one new and one end per track, new first
    lifecycle = [json.loads(p) for t, p, _ in messages if t == f"{base}/objects"]
    for doc in lifecycle:
        schemas["object-event"].validate(doc)
    by_track: dict[str, list[str]] = defaultdict(list)
    for doc in lifecycle:
        by_track[doc["track_id"]].append(doc["type"])
    for kinds in by_track.values():
        assert kinds[0] == "new" and kinds[-1] == "end" and kinds.count("new") == kinds.count("end") == 1, (
            kinds
        )
    boot = {tid.split("-")[0] for tid in by_track}
    assert len(boot) == 1

    # --- detections: valid, their track ids are the lifecycle's, and each track is one true object
    scene = MovingScene(SEED, 640, 480, OBJECTS)
    image = np.empty((480, 640, 3), np.uint8)
    pairs: Counter[tuple[str, int]] = Counter()
    events = [json.loads(p) for t, p, _ in messages if t == f"{base}/detections"]
    assert len(events) > FRAMES // 2
    for event in events:
        schemas["detection-event"].validate(event)
        ids = [d["track_id"] for d in event["detections"]]
        assert {i for i in ids if i is not None} <= set(by_track)
        truth, _, truth_ids = scene.render_truth(event["frame"], image)
        boxes = np.array([d["box"] for d in event["detections"]], float).reshape(-1, 4)
        iou = iou_matrix(boxes, truth.astype(float))
        for k, track_id in enumerate(ids):
            if track_id is not None and iou.shape[1] and iou[k].max() >= 0.5:
                pairs[(track_id, int(truth_ids[iou[k].argmax()]))] += 1
    owner: dict[str, Counter[int]] = defaultdict(Counter)
    for (track_id, truth_id), n in pairs.items():
        owner[track_id][truth_id] += n
    for track_id, hits in owner.items():  # a track follows one object
        assert hits.most_common(1)[0][1] >= 0.9 * sum(hits.values()), (track_id, hits)
    covered = {hits.most_common(1)[0][0] for hits in owner.values()}
    assert covered == set(range(OBJECTS))  # every object got a track
    assert len(by_track) <= OBJECTS + 2  # and not many more tracks than objects

    # --- counts: retained, reached every object at once, zero after the stop; crossings consistent
    counts = [(t, p.decode(), r) for t, p, r in messages if t.startswith(f"{base}/") and t.endswith("/count")]
    assert all(r is False for _, _, r in counts)  # live deliveries; the broker keeps them retained (below)
    totals = [int(p) for t, p, _ in counts if t == f"{base}/all/all/count"]
    assert max(totals) == OBJECTS and totals[-1] == 0
    crossed = [d for d in lifecycle if d["type"] == "crossed"]
    assert crossed and {d["line"] for d in crossed} == {"middle"}
    for direction in ("in", "out"):
        want = Counter(d["label"] for d in crossed if d["direction"] == direction)
        for label, n in want.items():
            last = [p for t, p, _ in messages if t == f"{base}/middle/{label}/{direction}"][-1]
            assert int(last) == n
    assert {d["type"] for d in lifecycle} >= {"new", "end", "entered", "left", "crossed"}
    late = Subscriber(broker.port, [f"{base}/+/+/count"], client_id=f"late-{prefix}", persistent=False)
    try:
        assert late.wait_for(lambda ms: any(t == f"{base}/all/all/count" for t, _, _ in ms), 5)
        retained = {t: (p, r) for t, p, r in late.snapshot()}
    finally:
        late.close()
    assert retained[f"{base}/all/all/count"] == (b"0", True)
    assert all(r for _, r in retained.values())

    # --- snapshots: the end messages name files that exist
    ends = [d for d in lifecycle if d["type"] == "end"]
    for end in ends:
        assert end["snapshot"] == f"/api/snapshots/yard/{end['track_id']}.jpg"
        assert (tmp_path / "snapshots" / "yard" / f"{end['track_id']}.jpg").read_bytes()[:2] == b"\xff\xd8"

    # --- Home Assistant discovery: one sensor per label and a binary sensor, retained, on our topics
    configs = {t: json.loads(p) for t, p, _ in messages if t.startswith(f"{discovery}/") and p and t != stale}
    labels = ["circle", "square", "triangle"]
    assert set(configs) == {f"{discovery}/sensor/{node}/yard_{label}_count/config" for label in labels} | {
        f"{discovery}/binary_sensor/{node}/yard_object_present/config"
    }
    for body in configs.values():
        assert body["availability_topic"] == f"{prefix}/{DEVICE}/status"
        assert body["device"]["identifiers"] == [node]
        assert body["unique_id"].startswith(node) and body["name"]
        assert body["state_topic"].startswith(f"{base}/all/") and body["state_topic"].endswith("/count")
    assert len({b["unique_id"] for b in configs.values()}) == len(configs)
