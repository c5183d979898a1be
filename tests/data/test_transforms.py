"""SamTransform against segment_anything's ResizeLongestSide, and SAM's mask post-processing recipe."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from garasam.data.prompts import Prompt
from garasam.data.readers import Sample
from garasam.data.transforms import PIXEL_MEAN, PIXEL_STD, SamTransform
from tests.data.conftest import box_mask, random_image


@pytest.mark.parametrize("shape", [(37, 53), (64, 20), (100, 100), (5, 300)])
def test_matches_official_resize_longest_side(official_transforms: types.ModuleType, shape) -> None:
    official = official_transforms.ResizeLongestSide(64)
    ours = SamTransform(64)
    image = random_image(*shape, seed=shape[0])
    assert ours.get_preprocess_shape(*shape, 64) == official.get_preprocess_shape(*shape, 64)
    resized = ours.apply_image(image)
    assert isinstance(resized, np.ndarray) and resized.dtype == np.uint8 and max(resized.shape[:2]) == 64
    np.testing.assert_array_equal(resized, official.apply_image(image))  # numpy HWC, as the official
    coords = np.array([[0.0, 0.0], [shape[1] - 1, shape[0] - 1], [3.5, 2.25]])
    np.testing.assert_allclose(ours.apply_coords(coords, shape), official.apply_coords(coords, shape))
    torch_coords = torch.tensor(coords, dtype=torch.float32)
    np.testing.assert_allclose(
        ours.apply_coords(torch_coords, shape).numpy(), official.apply_coords(coords, shape), rtol=1e-6
    )
    boxes = np.array([[1.0, 2.0, 10.0, 12.0], [0.0, 0.0, shape[1] - 1, shape[0] - 1]])
    np.testing.assert_allclose(ours.apply_boxes(boxes, shape), official.apply_boxes(boxes, shape))


def test_preprocess_normalises_and_pads_with_zeros() -> None:
    transform = SamTransform(16)
    images = [torch.full((3, 16, 10), 200, dtype=torch.uint8), torch.zeros((3, 7, 16), dtype=torch.uint8)]
    batch = transform.preprocess(images)
    assert batch.shape == (2, 3, 16, 16) and batch.dtype == torch.float32
    expected = (200 - torch.tensor(PIXEL_MEAN)) / torch.tensor(PIXEL_STD)
    torch.testing.assert_close(batch[0, :, :, :10], expected.view(3, 1, 1).expand(3, 16, 10))
    assert batch[0, :, :, 10:].abs().sum() == 0 and batch[1, :, 7:].abs().sum() == 0
    # an already padded uint8 batch: input_sizes keep the padding exactly zero after normalisation
    padded = torch.zeros((2, 3, 16, 16), dtype=torch.uint8)
    padded[0, :, :, :10], padded[1, :, :7] = 200, 0
    torch.testing.assert_close(transform.preprocess(padded, [(16, 10), (7, 16)]), batch)
    with pytest.raises(ValueError, match="larger than the SAM input"):
        transform.preprocess([torch.zeros((3, 17, 4), dtype=torch.uint8)])


def test_postprocess_follows_sam_recipe() -> None:
    transform = SamTransform(64)
    original, input_size = (30, 48), transform.input_size((30, 48))
    assert input_size == (40, 64)
    low_res = torch.full((2, 1, 16, 16), -10.0)
    low_res[..., 10:, :] = 50.0  # padding region (rows >= 40 of 64) predicted foreground
    low_res[1, 0, :5, :8] = 10.0  # top-left quarter of the image region
    out = transform.postprocess_masks(low_res, input_size, original)
    assert out.shape == (2, 1, 30, 48)
    assert (out[0, 0, :-1] < 0).all()  # padding was cropped: at most bilinear bleed into the last row
    foreground = out[1, 0] > 0
    assert foreground[:14, :22].all() and not foreground[17:-1].any() and not foreground[:-1, 26:].any()
    manual = torch.nn.functional.interpolate(low_res, (64, 64), mode="bilinear", align_corners=False)[
        ..., :40, :64
    ]
    manual = torch.nn.functional.interpolate(manual, original, mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, manual)
    assert transform.postprocess_masks(low_res[0, 0], input_size, original).shape == original


def test_apply_masks_and_collate() -> None:
    transform = SamTransform(32)
    image = random_image(20, 40)
    masks = [box_mask(20, 40, 0, 0, 10, 20), box_mask(20, 40, 10, 20, 20, 40)]
    prompts = [
        Prompt(box=np.array([0, 0, 19, 9], np.float32)),
        Prompt(points=np.array([[30.0, 15.0]], np.float32), labels=np.ones(1, np.int64)),
    ]
    small = Sample(image=random_image(8, 8), masks=[box_mask(8, 8, 2, 2, 6, 6)], meta={"image_id": "s"})
    batch = transform.collate(
        [Sample(image, masks, {"image_id": "a"}), small],
        [prompts, [Prompt(box=np.array([2, 2, 5, 5], np.float32))]],
    )
    assert batch.images.shape == (2, 3, 32, 32) and batch.images.dtype == torch.uint8
    assert batch.input_sizes == [(16, 32), (32, 32)] and batch.original_sizes == [(20, 40), (8, 8)]
    assert (batch.images[0, :, 16:] == 0).all()
    torch.testing.assert_close(batch.images[0, :, :16], transform.resize_image(image))
    assert batch.masks[0].shape == (2, 32, 32) and batch.masks[0].dtype == torch.bool
    assert (
        batch.masks[0][0, :8, :16].all()
        and batch.masks[0][0].sum() == 8 * 16
        and not batch.masks[0][:, 16:].any()
    )
    assert batch.masks[1][0].sum() == 16 * 16  # upsampled x4
    np.testing.assert_allclose(batch.prompts[0][0].box, [0, 0, 15.2, 7.2], rtol=1e-6)
    np.testing.assert_allclose(batch.prompts[0][1].points, [[24.0, 12.0]])
    np.testing.assert_allclose(batch.prompts[1][0].box, [8, 8, 20, 20])
    assert batch.meta[1]["image_id"] == "s"
    with pytest.raises(ValueError, match="2 masks but 1 prompts"):
        transform.collate([Sample(image, masks, {})], [prompts[:1]])


def test_sam2_geometry_stretches_to_the_square_and_resizes_logits_straight_back() -> None:
    """SAM 2's SAM2Transforms: resize to S x S whatever the aspect ratio, prompts scaled per axis, the
    low-res logits resized directly to the original size."""
    transform = SamTransform(64, square=True)
    image = random_image(30, 120)
    assert transform.resize_image(image).shape == (3, 64, 64)
    point = transform.apply_coords(np.array([[60.0, 15.0]]), (30, 120))
    np.testing.assert_allclose(point, [[32.0, 32.0]])
    masks = transform.apply_masks(np.ones((1, 30, 120), dtype=bool), (30, 120))
    assert masks.shape == (1, 64, 64) and bool(masks.all())
    pixels = transform.preprocess(transform.resize_image(image)[None])
    assert pixels.shape == (1, 3, 64, 64)
    logits = torch.randn(1, 16, 16)
    expected = torch.nn.functional.interpolate(logits[None], (30, 120), mode="bilinear", align_corners=False)[
        0
    ]
    torch.testing.assert_close(transform.postprocess_masks(logits, (64, 64), (30, 120)), expected)
