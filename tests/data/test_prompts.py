"""Prompts: SAM's (x, y) convention, interior points, boxes with jitter, train/eval prompt policies."""

from __future__ import annotations

import numpy as np
import pytest

from garasam.data.prompts import Prompt, eval_prompt, interior_point, mask_box, random_prompt, sample_points
from garasam.errors import ConfigError
from tests.data.conftest import box_mask


def test_sample_points_are_xy_inside_and_outside() -> None:
    mask = box_mask(20, 30, 2, 20, 6, 28)  # rows 2..5, cols 20..27
    coords, labels = sample_points(mask, 3, np.random.default_rng(0), negatives=2)
    assert coords.dtype == np.float32 and coords.shape == (5, 2)
    assert labels.tolist() == [1, 1, 1, 0, 0]
    xs, ys = coords[:, 0].astype(int), coords[:, 1].astype(int)
    assert mask[ys[:3], xs[:3]].all() and not mask[ys[3:], xs[3:]].any()
    assert (xs[:3] >= 20).all() and (ys[:3] <= 5).all()  # x is the column
    assert len({tuple(c) for c in coords[:3].tolist()}) == 3  # without replacement when possible
    single = box_mask(20, 30, 4, 4, 5, 5)
    coords, _ = sample_points(single, 2, np.random.default_rng(0))
    assert coords.tolist() == [[4.0, 4.0], [4.0, 4.0]]
    with pytest.raises(ValueError, match="empty mask"):
        sample_points(np.zeros((4, 4), bool), 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="whole image"):
        sample_points(np.ones((4, 4), bool), 1, np.random.default_rng(0), negatives=1)


def test_interior_point_is_the_distance_maximum() -> None:
    mask = box_mask(40, 60, 5, 10, 16, 41)  # 11 rows x 31 cols, a unique centre at (25, 10)
    assert interior_point(mask) == (25, 10)
    ring = np.zeros((41, 41), bool)
    yy, xx = np.mgrid[:41, :41]
    ring[((yy - 20) ** 2 + (xx - 20) ** 2 <= 400) & ((yy - 20) ** 2 + (xx - 20) ** 2 >= 100)] = True
    x, y = interior_point(ring)
    assert ring[y, x]  # inside the ring, not in its hole
    # the image border counts as an edge: a full-image mask gives its centre, a border object stays inside
    assert interior_point(np.ones((9, 13), bool)) == (6, 4)
    assert interior_point(box_mask(20, 20, 0, 0, 20, 5)) == (2, 9)  # rows 9 and 10 tie: raster order
    # ties (an even-sized square has 4 maxima) are broken the same way every time
    even = box_mask(10, 10, 2, 2, 6, 6)
    assert interior_point(even) == interior_point(even.copy()) and even[interior_point(even)[::-1]]


def test_mask_box_tight_and_jittered() -> None:
    mask = box_mask(30, 40, 5, 10, 15, 30)
    np.testing.assert_array_equal(mask_box(mask), np.array([10, 5, 29, 14], np.float32))
    rng = np.random.default_rng(0)
    boxes = np.stack([mask_box(mask, 0.1, rng) for _ in range(200)])
    width, height = 20, 10
    assert np.abs(boxes[:, [0, 2]] - [10, 29]).max() <= 0.1 * width + 1e-5
    assert np.abs(boxes[:, [1, 3]] - [5, 14]).max() <= 0.1 * height + 1e-5
    assert boxes.std(axis=0).min() > 0.2  # really jittered
    corner = box_mask(30, 40, 0, 0, 5, 5)
    jittered = np.stack([mask_box(corner, 0.5, rng) for _ in range(50)])
    assert jittered.min() >= 0 and (jittered[:, 2] >= jittered[:, 0]).all()
    with pytest.raises(ValueError, match="rng"):
        mask_box(mask, 0.1)


def test_random_prompt_mixes_boxes_and_points() -> None:
    mask = box_mask(30, 40, 5, 10, 15, 30)
    rng = np.random.default_rng(0)
    prompts = [random_prompt(mask, rng) for _ in range(200)]
    kinds = [p.kind for p in prompts]
    assert 60 < kinds.count("box") < 140
    counts = {len(p.points) for p in prompts if p.kind == "point"}
    assert counts == {1, 2, 3}
    assert all(p.labels.tolist() == [1] * len(p.points) for p in prompts if p.kind == "point")
    assert all(random_prompt(mask, rng, p_box=1.0).kind == "box" for _ in range(5))
    assert all(random_prompt(mask, rng, p_box=0.0, max_points=1).points.shape == (1, 2) for _ in range(5))


def test_eval_prompt_is_deterministic() -> None:
    mask = box_mask(30, 40, 5, 10, 15, 31)
    point = eval_prompt(mask, "point")
    assert point.points.tolist() == [[20.0, 9.0]] and point.labels.tolist() == [1] and point.box is None
    box = eval_prompt(mask, "box")
    assert box.box.tolist() == [10.0, 5.0, 30.0, 14.0] and box.points is None
    with pytest.raises(ConfigError, match="'point' or 'box'"):
        eval_prompt(mask, "scribble")
    with pytest.raises(ValueError, match="not both"):
        Prompt(points=np.zeros((1, 2)), labels=np.ones(1), box=np.zeros(4))
