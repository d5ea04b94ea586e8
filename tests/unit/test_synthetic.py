"""Tests of the synthetic shape renderer."""

from __future__ import annotations

import numpy as np
import pytest

from edgeinfer.synthetic import CLASS_NAMES, MovingScene, random_scene


def test_class_names() -> None:
    assert CLASS_NAMES == ("circle", "square", "triangle")


def test_random_scene_is_deterministic() -> None:
    a = random_scene(np.random.default_rng(7))
    b = random_scene(np.random.default_rng(7))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("seed", range(20))
def test_random_scene_outputs(seed: int) -> None:
    img, boxes, classes = random_scene(np.random.default_rng(seed), width=320, height=240)
    assert img.shape == (240, 320, 3) and img.dtype == np.uint8
    assert boxes.dtype == np.float32 and boxes.shape == (len(classes), 4)
    assert classes.dtype == np.int64
    assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 1] >= 0)
    assert np.all(boxes[:, 2] <= 320) and np.all(boxes[:, 3] <= 240)
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
    assert np.all((classes >= 0) & (classes < len(CLASS_NAMES)))


def test_random_scene_has_objects_usually() -> None:
    rng = np.random.default_rng(0)
    counts = [len(random_scene(rng)[2]) for _ in range(10)]
    assert sum(counts) >= 10


def test_moving_scene_frames() -> None:
    scene = MovingScene(seed=3)
    img0, boxes0, cls0 = scene.render(0)
    img5, boxes5, _ = scene.render(5)
    again, boxes_again, cls_again = scene.render(0)
    assert img0.shape == (480, 640, 3) and img0.dtype == np.uint8
    assert not np.array_equal(img0, img5)
    assert not np.array_equal(boxes0, boxes5)
    np.testing.assert_array_equal(img0, again)
    np.testing.assert_array_equal(boxes0, boxes_again)
    np.testing.assert_array_equal(cls0, cls_again)
    # a second instance with the same seed renders the same frames
    np.testing.assert_array_equal(MovingScene(seed=3).render(5)[0], img5)


def test_moving_scene_boxes_inside() -> None:
    scene = MovingScene(seed=11, width=320, height=240, n_objects=6)
    out = np.empty((240, 320, 3), np.uint8)
    for i in range(0, 300, 7):
        boxes, classes = scene.render_into(i, out)
        assert len(boxes) == len(classes) >= 1
        assert np.all(boxes >= 0) and np.all(boxes[:, [0, 2]] <= 320) and np.all(boxes[:, [1, 3]] <= 240)
        sizes = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        assert np.all(sizes >= 30)
