"""J and F (DAVIS's measures) on hand-made masks with known answers, and F against an independent
formulation (distances from a Euclidean distance transform instead of a dilation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from garasam.video.metrics import (
    boundary_map,
    boundary_measure,
    region_similarity,
    sequence_measures,
    statistics,
)


def square(top: int, left: int, side: int, shape: tuple[int, int] = (60, 80)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def test_region_similarity_of_known_overlaps() -> None:
    a, b = square(10, 10, 20), square(10, 20, 20)  # 20 x 10 shared, 20 x 30 union
    assert region_similarity(a, b) == pytest.approx(200 / 600)
    assert region_similarity(a, a) == 1.0
    assert region_similarity(a, square(40, 50, 10)) == 0.0
    empty = np.zeros((60, 80), dtype=bool)
    assert region_similarity(empty, empty) == 1.0 and region_similarity(a, empty) == 0.0


def test_boundary_is_one_pixel_and_not_the_image_edge() -> None:
    edge = boundary_map(square(10, 10, 5))
    assert edge.sum() > 0 and edge[12, 12] == 0  # the interior is no boundary
    assert boundary_map(np.ones((6, 6), dtype=bool)).sum() == 0  # a full frame has none


def test_boundary_measure_tolerates_shifts_within_its_radius_only() -> None:
    a = square(10, 10, 20)
    diagonal = math.hypot(60, 80)  # 100: the DAVIS tolerance 0.008 is 0.8, rounded up to 1 pixel
    assert diagonal == 100
    assert boundary_measure(a, a) == 1.0
    assert boundary_measure(a, np.roll(a, 1, axis=1)) == 1.0  # 1 pixel: within the tolerance
    assert boundary_measure(a, np.roll(a, 4, axis=1)) < 1.0
    assert boundary_measure(a, np.roll(a, 4, axis=1), bound_th=4) == 1.0  # 4 pixels allowed
    assert boundary_measure(a, square(45, 60, 5)) == 0.0  # far apart
    empty = np.zeros_like(a)
    assert boundary_measure(empty, empty) == 1.0 and boundary_measure(a, empty) == 0.0


def test_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match="same H x W"):
        region_similarity(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="bound_th"):
        boundary_measure(np.zeros((4, 4)), np.zeros((4, 4)), bound_th=float("nan"))


def _f_by_distance(prediction: np.ndarray, target: np.ndarray, radius: float) -> float:
    """F with matches found by distance (<= radius) to the other boundary: the same definition,
    computed without a structuring element."""
    ours, theirs = boundary_map(prediction), boundary_map(target)
    if not ours.any() and not theirs.any():
        return 1.0
    if not ours.any() or not theirs.any():
        return 0.0
    to_theirs = ndimage.distance_transform_edt(~theirs)
    to_ours = ndimage.distance_transform_edt(~ours)
    precision = (to_theirs[ours] <= radius).mean()
    recall = (to_ours[theirs] <= radius).mean()
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


@pytest.mark.parametrize("seed", range(20))
def test_boundary_measure_equals_a_distance_transform_formulation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(20, 90)), int(rng.integers(20, 90)))
    masks = []
    for _ in range(2):  # blobs: smoothed noise thresholded, so boundaries are long and irregular
        noise = ndimage.gaussian_filter(rng.normal(size=shape), sigma=float(rng.uniform(1, 5)))
        masks.append(noise > rng.uniform(-0.05, 0.05))
    radius = math.ceil(0.008 * math.hypot(*shape))
    for bound_th, r in ((0.008, radius), (3, 3)):
        assert boundary_measure(*masks, bound_th=bound_th) == pytest.approx(
            _f_by_distance(*masks, r), abs=1e-12
        )


def test_statistics_mean_recall_and_decay() -> None:
    values = np.array([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])  # quarters: [1, .9] ... [.4, .3]
    stats = statistics(values)
    assert stats.mean == pytest.approx(0.65)
    assert stats.recall == pytest.approx(5 / 8)  # strictly above 0.5
    assert stats.decay == pytest.approx(0.95 - 0.35)
    with_gap = statistics(np.array([1.0, np.nan, 0.0, 0.0]))
    assert with_gap.mean == pytest.approx(1 / 3) and with_gap.recall == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="1-D"):
        statistics(np.zeros((2, 2)))


def test_sequence_measures_skip_the_first_and_last_frame() -> None:
    target = np.stack([square(10, 10, 20)] * 5)[None]  # one object, 5 frames
    prediction = target.copy()
    prediction[0, 0] = False  # the first and last frames are wrong, but not scored
    prediction[0, -1] = False
    prediction[0, 2] = square(10, 20, 20)  # the middle frame: J = 1/3
    region, boundary = sequence_measures(prediction, target)
    assert region.shape == boundary.shape == (1, 3)
    np.testing.assert_allclose(region[0], [1.0, 1 / 3, 1.0])
    assert boundary[0, 0] == 1.0 and boundary[0, 1] < 1.0
    region_all, _ = sequence_measures(prediction, target, skip_ends=False)
    assert region_all.shape == (1, 5) and region_all[0, 0] == 0.0
    with pytest.raises(ValueError, match="one shape"):
        sequence_measures(prediction, target[:, :4])


def test_j_and_f_agree_with_vos_benchmark() -> None:
    """J and F against vos-benchmark's Evaluator (DAVIS 2017's code, installed for the tests only) on
    random blob masks, empty masks and identical masks, at DAVIS's 0.008 x diagonal tolerance."""
    from vos_benchmark.evaluator import Evaluator

    rng = np.random.default_rng(7)
    size = (60, 80)
    frames_pred, frames_gt = [], []
    for _ in range(12):
        pred, gt = np.zeros(size, np.uint8), np.zeros(size, np.uint8)
        for labels in (pred, gt):
            for obj in (1, 2):
                if rng.random() < 0.85:
                    cy, cx, r = rng.uniform(10, 50), rng.uniform(10, 70), rng.uniform(4, 14)
                    yy, xx = np.mgrid[: size[0], : size[1]]
                    labels[(yy - cy) ** 2 + ((xx - cx) * rng.uniform(0.6, 1.4)) ** 2 < r * r] = obj
        frames_pred.append(pred)
        frames_gt.append(gt)
    frames_pred.append(frames_gt[-1].copy())  # a perfect frame
    frames_gt.append(frames_gt[-1].copy())
    frames_pred.append(np.zeros(size, np.uint8))  # both empty
    frames_gt.append(np.zeros(size, np.uint8))
    reference = Evaluator(boundary=0.008)
    for pred, gt in zip(frames_pred, frames_gt, strict=True):
        reference.feed_frame(pred, gt)
    for obj in (1, 2):
        region = [region_similarity(p == obj, g == obj) for p, g in zip(frames_pred, frames_gt, strict=True)]
        boundary = [boundary_measure(p == obj, g == obj) for p, g in zip(frames_pred, frames_gt, strict=True)]
        np.testing.assert_allclose(region, reference.object_iou[obj], rtol=0, atol=1e-12)
        np.testing.assert_allclose(boundary, reference.boundary_f[obj], rtol=0, atol=1e-12)
