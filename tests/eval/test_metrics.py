"""Metrics against hand-computed masks and against the Boundary IoU authors' reference code."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from garasam.eval.metrics import average_precision, boundary_width, erode, mask_boundary, mask_metrics


def square(size: int = 64, top: int = 10, left: int = 10, side: int = 20) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[top : top + side, left : left + side] = True
    return mask


def reference_boundary(mask: np.ndarray, dilation_ratio: float = 0.02) -> np.ndarray:
    """`mask_to_boundary` from github.com/bowenc0221/boundary-iou-api (boundary_iou/utils), verbatim logic."""
    mask = mask.astype(np.uint8)
    h, w = mask.shape
    dilation = int(round(dilation_ratio * np.sqrt(h**2 + w**2)))
    dilation = max(dilation, 1)
    padded = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=dilation)[1 : h + 1, 1 : w + 1]
    return (mask - eroded).astype(bool)


def scores(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    return {name: float(value[0]) for name, value in mask_metrics(pred, gt).items()}


def test_boundary_width_is_two_percent_of_the_diagonal_and_at_least_one_pixel() -> None:
    assert boundary_width(64, 64) == 2  # 0.02 * 90.5 = 1.81
    assert boundary_width(1000, 1000) == 28  # 0.02 * 1414.2 = 28.3
    assert boundary_width(10, 10) == 1  # 0.28 rounds to 0, clamped to 1
    assert boundary_width(480, 640, dilation_ratio=0.05) == 40


def test_square_shifted_by_two_pixels_by_hand() -> None:
    # 64 x 64 image: d = 2. GT: 20 x 20 square; prediction: the same square 2 px to the right.
    gt, pred = square(), square(left=12)
    result = scores(pred, gt)
    # overlap 20 x 18 = 360, union 400 + 400 - 360 = 440
    assert result["iou"] == pytest.approx(360 / 440)
    assert result["dice"] == pytest.approx(2 * 360 / 800)
    assert result["pixel_acc"] == pytest.approx(1 - 80 / 4096)  # 40 + 40 pixels differ
    # Each boundary band is 400 - 16 x 16 = 144 px. Both bands share the top and bottom 2 rows over the
    # 18 overlapping columns (4 x 18 = 72 px) and nothing else: 72 / (144 + 144 - 72) = 1/3.
    assert mask_boundary(gt, 2).sum() == 144
    assert (mask_boundary(gt, 2) & mask_boundary(pred, 2)).sum() == 72
    assert result["boundary_iou"] == pytest.approx(1 / 3)


def test_identical_masks_score_one() -> None:
    gt = square()
    assert scores(gt, gt) == {"iou": 1.0, "dice": 1.0, "pixel_acc": 1.0, "boundary_iou": 1.0}


def test_empty_ground_truth_and_empty_prediction_is_a_perfect_match_not_nan() -> None:
    empty = np.zeros((32, 48), bool)
    assert scores(empty, empty) == {"iou": 1.0, "dice": 1.0, "pixel_acc": 1.0, "boundary_iou": 1.0}


def test_empty_prediction_of_a_real_object_scores_zero() -> None:
    gt = square()
    result = scores(np.zeros_like(gt), gt)
    assert result == {
        "iou": 0.0,
        "dice": 0.0,
        "pixel_acc": pytest.approx(1 - 400 / 4096),
        "boundary_iou": 0.0,
    }
    assert scores(gt, np.zeros_like(gt))["iou"] == 0.0  # and a prediction where there is nothing


def test_full_masks_and_the_image_border_as_background() -> None:
    full = np.ones((64, 64), bool)
    # the image border counts as background: a full mask's boundary is the 2 px frame, 64^2 - 60^2
    assert mask_boundary(full, 2).sum() == 64 * 64 - 60 * 60
    assert scores(full, full)["boundary_iou"] == 1.0
    result = scores(full, square())
    assert result["iou"] == pytest.approx(400 / 4096)
    assert result["dice"] == pytest.approx(800 / 4496)
    assert result["pixel_acc"] == pytest.approx(400 / 4096)
    assert result["boundary_iou"] == 0.0  # the frame and the square's ring do not meet
    half = np.zeros((64, 64), bool)
    half[:, :32] = True  # touches three image sides: eroded core is rows 2..61 x cols 2..29
    assert mask_boundary(half, 2).sum() == 64 * 32 - 60 * 28


@pytest.mark.parametrize("shape", [(64, 64), (37, 90), (120, 50)])
def test_boundary_matches_the_reference_implementation(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0])
    for _ in range(5):
        blobs = cv2.GaussianBlur(rng.random(shape).astype(np.float32), (0, 0), 4)
        mask = blobs > np.quantile(blobs, rng.uniform(0.2, 0.8))
        width = boundary_width(*shape)
        np.testing.assert_array_equal(mask_boundary(mask, width).numpy(), reference_boundary(mask))


def test_boundary_iou_matches_the_reference_on_random_masks() -> None:
    rng = np.random.default_rng(3)
    shape = (48, 72)
    masks = []
    for _ in range(8):
        blobs = cv2.GaussianBlur(rng.random(shape).astype(np.float32), (0, 0), 3)
        masks.append(blobs > np.quantile(blobs, 0.6))
    gt, pred = np.stack(masks[:4]), np.stack(masks[4:])
    got = mask_metrics(pred, gt)["boundary_iou"].numpy()
    for i in range(4):
        bg, bp = reference_boundary(gt[i]), reference_boundary(pred[i])
        assert got[i] == pytest.approx((bg & bp).sum() / (bg | bp).sum())


def test_erosion_radius_matches_repeated_three_by_three_erosions() -> None:
    mask = torch.from_numpy(square(size=40, top=5, left=8, side=25))[None]
    for radius in (1, 3, 6):
        expected = cv2.erode(mask[0].numpy().astype(np.uint8), np.ones((3, 3), np.uint8), iterations=radius)
        # cv2 treats outside as "no constraint"; within the image interior both agree
        np.testing.assert_array_equal(erode(mask, radius)[0].numpy(), expected.astype(bool))


def test_metrics_are_per_object_and_reject_mismatched_shapes() -> None:
    gt = np.stack([square(), square(top=30), np.zeros((64, 64), bool)])
    pred = np.stack([square(), np.zeros((64, 64), bool), np.zeros((64, 64), bool)])
    result = mask_metrics(pred, gt)
    assert result["iou"].tolist() == [1.0, 0.0, 1.0]
    assert all(not math.isnan(v) for values in result.values() for v in values.tolist())
    with pytest.raises(ValueError, match="differ in shape"):
        mask_metrics(pred[:, :32], gt)


def test_average_precision_by_hand() -> None:
    """Three objects ranked 0.9 > 0.8 > 0.3 by score: at IoU thresholds 0.50-0.80 the two first are
    hits (precision 1 up to recall 2/3: 67 of COCO's 101 recall points), at 0.85-0.90 only the first
    (34 points), at 0.95 none."""
    expected = (7 * 67 / 101 + 2 * 34 / 101) / 10
    assert average_precision([0.9, 0.8, 0.3], [0.9, 0.8, 0.1]) == pytest.approx(expected)


def test_average_precision_rewards_a_score_that_ranks_good_masks_first() -> None:
    ious = [0.95, 0.9, 0.6, 0.2]
    assert average_precision(ious, [4, 3, 2, 1]) > average_precision(ious, [1, 2, 3, 4])
    assert average_precision([1.0, 1.0], [0.0, 0.0]) == 1.0  # every mask perfect: AP 1 whatever the scores
    assert average_precision([0.4, 0.3], [1.0, 0.5]) == 0.0  # no mask reaches IoU 0.5


def test_average_precision_checks_its_inputs() -> None:
    assert math.isnan(average_precision([], []))
    with pytest.raises(ValueError, match="one score per IoU"):
        average_precision([0.5, 0.6], [1.0])
