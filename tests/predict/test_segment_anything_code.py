"""Code written for `segment_anything` runs on garasam with only its import line changed (issue 20,
item 4): the code paths of the official predictor and automatic-mask notebooks, on the bundled tiny SAM.

The notebooks' one cell that calls the model on a list of dicts (`sam(batched_input)`) has no
equivalent: transformers' `SamModel.forward` takes tensors (docs/predict.md shows the mapping).
"""

import numpy as np
import pytest
import torch

from garasam import SamAutomaticMaskGenerator, SamPredictor, sam_model_registry  # the changed line

RECORD_KEYS = {"segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"}


@pytest.fixture
def sam():
    model_type, sam_checkpoint, device = "tiny", None, "cpu"  # the notebooks' first cell, for the tiny SAM
    sam = sam_model_registry[model_type](checkpoint=sam_checkpoint)
    sam.to(device=device)
    return sam


def test_predictor_notebook_code_path(sam, image) -> None:
    height, width = image.shape[:2]
    predictor = SamPredictor(sam)
    predictor.set_image(image)

    # one click, three candidates; then the best candidate's logits fed back with a second click
    input_point, input_label = np.array([[60, 45]]), np.array([1])
    masks, scores, logits = predictor.predict(
        point_coords=input_point, point_labels=input_label, multimask_output=True
    )
    assert masks.shape == (3, height, width) and masks.dtype == bool and scores.shape == (3,)
    mask_input = logits[np.argmax(scores), :, :]
    masks, _, _ = predictor.predict(
        point_coords=np.array([[60, 45], [100, 30]]),
        point_labels=np.array([1, 1]),
        mask_input=mask_input[None, :, :],
        multimask_output=False,
    )
    assert masks.shape == (1, height, width)

    # a box, then a box with a background click
    input_box = np.array([30, 20, 100, 70])
    masks, _, _ = predictor.predict(
        point_coords=None, point_labels=None, box=input_box[None, :], multimask_output=False
    )
    assert masks.shape == (1, height, width)
    masks, _, _ = predictor.predict(
        point_coords=np.array([[35, 25]]), point_labels=np.array([0]), box=input_box, multimask_output=False
    )
    assert masks.shape == (1, height, width)

    # several boxes at once, in torch
    input_boxes = torch.tensor([[30, 20, 100, 70], [0, 0, 50, 40]], device=predictor.device)
    transformed_boxes = predictor.transform.apply_boxes_torch(input_boxes, image.shape[:2])
    masks, _, _ = predictor.predict_torch(
        point_coords=None, point_labels=None, boxes=transformed_boxes, multimask_output=False
    )
    assert masks.shape == (2, 1, height, width)

    # the resize transform hands back an H x W x 3 uint8 array, as the official one
    resized = predictor.transform.apply_image(image)
    assert isinstance(resized, np.ndarray) and resized.dtype == np.uint8 and max(resized.shape[:2]) == 256


def test_automatic_mask_notebook_code_path(sam, image) -> None:
    mask_generator = SamAutomaticMaskGenerator(sam)
    masks = mask_generator.generate(image)
    assert isinstance(masks, list) and all(set(m) == RECORD_KEYS for m in masks)

    mask_generator_2 = SamAutomaticMaskGenerator(
        model=sam,
        points_per_side=32,
        pred_iou_thresh=0.86,
        stability_score_thresh=0.92,
        crop_n_layers=1,
        crop_n_points_downscale_factor=2,
        min_mask_region_area=100,
    )
    masks2 = mask_generator_2.generate(image)
    for ann in sorted(masks2, key=(lambda x: x["area"]), reverse=True):
        assert ann["segmentation"].shape == image.shape[:2]

    # the tiny SAM's scores are low: with the thresholds off, records exist and carry every key
    everything = SamAutomaticMaskGenerator(
        sam,
        points_per_side=8,
        pred_iou_thresh=0,
        stability_score_thresh=0,
        crop_n_layers=1,
        crop_n_points_downscale_factor=2,
    ).generate(image)
    assert everything and all(set(m) == RECORD_KEYS for m in everything)
    assert {tuple(m["crop_box"]) for m in everything} - {(0.0, 0.0, 140.0, 90.0)}, (
        "the crop layer prompts too"
    )


def test_explicit_point_grids_and_uncompressed_rle(sam, image) -> None:
    from pycocotools import mask as mask_utils

    grid = np.array([[0.43, 0.5], [0.2, 0.2], [0.8, 0.7]])
    options = dict(pred_iou_thresh=0, stability_score_thresh=0, box_nms_thresh=1.0)
    binary = SamAutomaticMaskGenerator(sam, points_per_side=None, point_grids=[grid], **options).generate(
        image
    )
    assert {tuple(np.round(m["point_coords"][0], 1)) for m in binary} <= {
        (60.2, 45.0),
        (28.0, 18.0),
        (112.0, 63.0),
    }
    rle = SamAutomaticMaskGenerator(
        sam, points_per_side=None, point_grids=[grid], output_mode="uncompressed_rle", **options
    ).generate(image)
    assert len(rle) == len(binary)
    for coded, plain in zip(rle, binary, strict=True):
        assert coded["segmentation"]["size"] == [90, 140] and isinstance(
            coded["segmentation"]["counts"], list
        )
        decoded = mask_utils.decode(mask_utils.frPyObjects(coded["segmentation"], 90, 140)).astype(bool)
        np.testing.assert_array_equal(decoded, plain["segmentation"])
