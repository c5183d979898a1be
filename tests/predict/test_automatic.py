"""Automatic mask generation and the mask utilities it is built on."""

import warnings

import cv2
import numpy as np
import pytest
import torch

from garasam.errors import ConfigError, DataError
from garasam.predict import AutomaticMaskGenerator, GaraSamPredictor
from garasam.predict.masks import (
    batched_nms,
    box_iou,
    coco_bbox,
    decode_rle,
    encode_rle,
    masks_to_boxes,
    remove_small_regions,
)

RECORD_KEYS = {"segmentation", "area", "bbox", "predicted_iou", "stability_score", "point_coords", "crop_box"}


def test_rle_round_trip_and_coco_box() -> None:
    mask = np.zeros((7, 9), dtype=bool)
    mask[2:5, 3:8] = True
    mask[6, 0] = True
    rle = encode_rle(mask)
    assert rle["size"] == [7, 9] and isinstance(rle["counts"], str)
    np.testing.assert_array_equal(decode_rle(rle), mask)
    assert coco_bbox(mask) == [0, 2, 8, 5]
    assert coco_bbox(np.zeros((3, 3), dtype=bool)) == [0, 0, 0, 0]


def test_masks_to_boxes_is_inclusive_and_zero_when_empty() -> None:
    masks = torch.zeros((3, 6, 8), dtype=torch.bool)
    masks[0, 1:4, 2:7] = True
    masks[1, 5, 0] = True
    boxes = masks_to_boxes(masks)
    assert boxes.tolist() == [[2, 1, 6, 3], [0, 5, 0, 5], [0, 0, 0, 0]]
    assert masks_to_boxes(masks[:0]).shape == (0, 4)


def test_batched_nms_matches_a_brute_force_greedy_reference() -> None:
    generator = torch.Generator().manual_seed(0)
    corners = torch.rand(40, 2, generator=generator) * 50
    sizes = torch.rand(40, 2, generator=generator) * 30 + 1
    boxes = torch.cat([corners, corners + sizes], 1)
    scores = torch.rand(40, generator=generator)
    groups = torch.randint(0, 3, (40,), generator=generator)
    keep = batched_nms(boxes, scores, groups, 0.3)
    iou = box_iou(boxes)
    expected: list[int] = []
    for i in sorted(range(40), key=lambda j: -float(scores[j])):
        if all(groups[i] != groups[k] or iou[i, k] <= 0.3 for k in expected):
            expected.append(i)
    assert keep.tolist() == expected
    assert 0 < len(expected) < 40
    assert batched_nms(boxes[:0], scores[:0], groups[:0], 0.5).shape == (0,)


def test_remove_small_regions() -> None:
    mask = np.zeros((20, 20), dtype=bool)
    mask[2:12, 2:12] = True
    mask[5, 5] = False  # a one-pixel hole
    mask[16:18, 16:18] = True  # a four-pixel island
    filled, changed = remove_small_regions(mask, 5, "holes")
    assert changed and filled[5, 5] and filled.sum() == mask.sum() + 1
    pruned, changed = remove_small_regions(filled, 5, "islands")
    assert changed and not pruned[16:18, 16:18].any() and pruned[2:12, 2:12].all()
    same, changed = remove_small_regions(pruned, 5, "islands")
    assert not changed and np.array_equal(same, pruned)
    only_small = np.zeros((10, 10), dtype=bool)
    only_small[0, 0] = only_small[5:7, 5] = True
    kept, _ = remove_small_regions(only_small, 5, "islands")  # all small: the largest survives
    assert kept.sum() == 2 and kept[5:7, 5].all()


def test_generate_records_on_the_tiny_model(tiny_sam, image) -> None:
    predictor = GaraSamPredictor(tiny_sam)
    generator = AutomaticMaskGenerator(
        predictor, points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0, box_nms_thresh=1.0
    )
    records = generator.generate(image)
    # NMS at IoU 1.0 removes only identical boxes: at most 4 x 4 points x 3 masks, minus edge cuts
    assert 0 < len(records) <= 48
    for record in records:
        assert set(record) == RECORD_KEYS
        assert record["segmentation"].shape == (90, 140) and record["segmentation"].dtype == bool
        assert record["area"] == int(record["segmentation"].sum())
        assert record["crop_box"] == [0.0, 0.0, 140.0, 90.0]
        ((x, y),) = record["point_coords"]
        assert 0 < x < 140 and 0 < y < 90
    grid = sorted({tuple(r["point_coords"][0]) for r in records})
    assert set(grid) <= {(140 * (i + 0.5) / 4, 90 * (j + 0.5) / 4) for i in range(4) for j in range(4)}
    assert generator.gate_summary() is None
    as_rle = AutomaticMaskGenerator(
        predictor,
        points_per_side=4,
        pred_iou_thresh=0,
        stability_score_thresh=0,
        box_nms_thresh=1.0,
        output_mode="coco_rle",
    ).generate(image)
    assert len(as_rle) == len(records)
    np.testing.assert_array_equal(decode_rle(as_rle[0]["segmentation"]), records[0]["segmentation"])


def test_thresholds_nms_and_crops_reduce_or_extend_the_masks(tiny_sam, image) -> None:
    predictor = GaraSamPredictor(tiny_sam)
    options = dict(points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0)
    everything = AutomaticMaskGenerator(predictor, box_nms_thresh=1.0, **options).generate(image)
    deduplicated = AutomaticMaskGenerator(predictor, box_nms_thresh=0.1, **options).generate(image)
    assert len(deduplicated) < len(everything)
    none = AutomaticMaskGenerator(predictor, points_per_side=4, pred_iou_thresh=1.0).generate(image)
    assert none == []
    stable = AutomaticMaskGenerator(
        predictor, box_nms_thresh=1.0, points_per_side=4, pred_iou_thresh=0, stability_score_thresh=0.5
    ).generate(image)
    assert all(r["stability_score"] > 0.5 for r in stable) and len(stable) <= len(everything)
    cropped = AutomaticMaskGenerator(predictor, crop_n_layers=1, **options).generate(image)
    crops = {tuple(r["crop_box"]) for r in cropped}
    assert crops - {(0.0, 0.0, 140.0, 90.0)}, "masks from the 2 x 2 crop layer survive"
    cleaned = AutomaticMaskGenerator(
        predictor, min_mask_region_area=30, box_nms_thresh=1.0, **options
    ).generate(image)
    assert cleaned
    for record in cleaned:
        count, _, stats, _ = cv2.connectedComponentsWithStats(
            record["segmentation"].astype(np.uint8), connectivity=8
        )
        sizes = stats[1:, cv2.CC_STAT_AREA]
        assert count == 2 or (sizes >= 30).all(), "small islands go, unless the mask has nothing else"


def test_bad_options() -> None:
    with pytest.raises(ConfigError):
        AutomaticMaskGenerator(None, points_per_side=0)
    with pytest.raises(ConfigError, match="output_mode"):
        AutomaticMaskGenerator(None, output_mode="polygons")


@pytest.mark.parametrize("shape", [(3, 50, 3), (50, 3, 3), (2, 2, 3)])
def test_thin_and_tiny_images_keep_their_orientation_without_warnings(tiny_sam, shape) -> None:
    """Issue 13, case 13: transformers guessed the channel axis of an array and warned (a 3 x 50 image
    became 50 x 3); the generator now hands it a PIL image."""
    image = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    generator = AutomaticMaskGenerator(
        GaraSamPredictor(tiny_sam), points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        records = generator.generate(image)
    assert records and all(r["segmentation"].shape == shape[:2] for r in records)


def test_a_one_pixel_image_is_refused_clearly(tiny_sam) -> None:
    generator = AutomaticMaskGenerator(GaraSamPredictor(tiny_sam), points_per_side=4)
    with pytest.raises(DataError, match="1x1 is too small for automatic masks"):
        generator.generate(np.zeros((1, 1, 3), dtype=np.uint8))


def test_record_boxes_follow_coco_like_the_cli(tiny_sam, image) -> None:
    """Issue 20, item 10: the generator's bbox was one pixel narrower than the CLI's for the same mask."""
    from pycocotools import mask as mask_utils

    generator = AutomaticMaskGenerator(
        GaraSamPredictor(tiny_sam), points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    records = generator.generate(image)
    assert records
    for record in records:
        reference = mask_utils.toBbox(encode_rle(record["segmentation"])).tolist()
        assert record["bbox"] == reference == coco_bbox(record["segmentation"])


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("points_per_side", 1000, "points_per_side must be from 1 to 128"),
        ("pred_iou_thresh", float("nan"), "pred_iou_thresh must be a number from 0 to 1"),
        ("stability_score_thresh", 1.5, "stability_score_thresh must be a number from 0 to 1"),
        ("box_nms_thresh", -0.1, "box_nms_thresh"),
        ("crop_nms_thresh", float("inf"), "crop_nms_thresh"),
        ("crop_overlap_ratio", "0.3", "crop_overlap_ratio"),
        ("stability_score_offset", float("nan"), "stability_score_offset must be a finite number"),
    ],
)
def test_the_python_generator_checks_what_the_cli_checks(option, value, message) -> None:
    """Issue 29: the Python API took a million-prompt grid and NaN thresholds the CLI refuses."""
    with pytest.raises(ConfigError, match=message):
        AutomaticMaskGenerator(None, **{option: value})


def test_a_dense_grid_shows_progress_on_a_terminal(tiny_sam, monkeypatch) -> None:
    """Issue 29, item 9: `--auto --points-per-side 128` was minutes of silent work per image."""
    from garasam.predict import automatic

    made = []
    real = automatic.tqdm

    def recording(*args, **kwargs):
        bar = real(*args, **{**kwargs, "disable": False})
        made.append(bar)
        return bar

    monkeypatch.setattr(automatic, "tqdm", recording)
    image = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    options = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "points_per_batch": 16}
    AutomaticMaskGenerator(GaraSamPredictor(tiny_sam), points_per_side=20, **options).generate(image)
    AutomaticMaskGenerator(GaraSamPredictor(tiny_sam), points_per_side=8, **options).generate(image)
    assert [(bar.total, bar.n) for bar in made] == [(25, 25), (4, 0)]  # a disabled bar counts nothing
