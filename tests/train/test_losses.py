"""SAM's mask losses: values, padding, best-of-three, empty targets, upsampling."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from garasam.errors import ConfigError
from garasam.train.losses import (
    LossWeights,
    dice_loss,
    mask_iou,
    mask_losses,
    sigmoid_focal_loss,
    valid_region,
)


def test_focal_loss_single_pixel_values() -> None:
    zero = torch.zeros(1, 1)
    # logit 0: p = 0.5, CE = ln 2, (1 - p_t)^2 = 1/4; alpha = 0.25 for the object, 0.75 for background
    assert sigmoid_focal_loss(zero, torch.ones(1, 1)).item() == pytest.approx(0.25 * 0.25 * math.log(2))
    assert sigmoid_focal_loss(zero, torch.zeros(1, 1)).item() == pytest.approx(0.75 * 0.25 * math.log(2))
    # a confident right answer costs (almost) nothing, a confident wrong one a lot
    assert sigmoid_focal_loss(torch.full((1, 1), 8.0), torch.ones(1, 1)).item() < 1e-7
    assert sigmoid_focal_loss(torch.full((1, 1), -8.0), torch.ones(1, 1)).item() > 1.0


def test_dice_and_iou_of_a_perfect_and_a_disjoint_mask() -> None:
    target = torch.zeros(1, 8, 8)
    target[0, 2:5, 2:5] = 1
    perfect = (target * 2 - 1) * 20
    assert dice_loss(perfect, target).item() < 1e-3
    assert mask_iou(perfect, target).item() == 1.0
    assert mask_iou(-perfect, target).item() == 0.0
    # empty target and empty prediction: a perfect match, not NaN
    assert mask_iou(torch.full((1, 8, 8), -5.0), torch.zeros(1, 8, 8)).item() == 1.0
    assert dice_loss(torch.full((1, 8, 8), -20.0), torch.zeros(1, 8, 8)).item() < 1e-3


def test_padding_outside_the_image_does_not_count() -> None:
    torch.manual_seed(0)
    masks = torch.zeros(2, 32, 32, dtype=torch.bool)
    masks[:, 4:12, 4:12] = True
    logits = torch.randn(2, 1, 32, 32)
    sizes = torch.tensor([[20, 24], [20, 24]])
    base = mask_losses(logits, torch.zeros(2, 1), masks, input_sizes=sizes)
    changed = logits.clone()
    changed[:, :, 20:, :] = 50.0  # "object" predicted all over the padding
    changed[:, :, :, 24:] = 50.0
    again = mask_losses(changed, torch.zeros(2, 1), masks, input_sizes=sizes)
    torch.testing.assert_close(again.per_object, base.per_object)
    without_sizes = mask_losses(changed, torch.zeros(2, 1), masks)
    assert (without_sizes.per_object > base.per_object).all()


def test_best_of_three_trains_only_the_best_mask() -> None:
    target = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    target[..., 4:10, 4:10] = True
    good = (target.float() * 2 - 1) * 10
    logits = torch.stack([torch.zeros(1, 1, 16, 16), good, -good], dim=2)  # [B, P, M=3, h, w]
    logits.requires_grad_(True)
    out = mask_losses(logits, torch.zeros(1, 1, 3), target, best_of=True)
    assert out.chosen.tolist() == [1]
    assert out.iou.tolist() == [1.0]
    out.total.backward()
    grad_per_mask = logits.grad.abs().flatten(3).sum(-1)[0, 0]
    assert grad_per_mask[1] > 0 and grad_per_mask[0] == 0 and grad_per_mask[2] == 0


def test_weights_iou_head_term_and_low_res_upsampling() -> None:
    torch.manual_seed(1)
    low = torch.randn(3, 1, 1, 8, 8)
    masks = torch.rand(3, 1, 32, 32) > 0.5
    scores = torch.rand(3, 1, 1)
    weights = LossWeights(focal=2.0, dice=3.0, iou=5.0)
    out = mask_losses(low, scores, masks, weights=weights)
    up = F.interpolate(low[:, 0], (32, 32), mode="bilinear", align_corners=False)
    target = masks.float()
    focal = sigmoid_focal_loss(up, target)[:, 0]
    dice = dice_loss(up, target)[:, 0]
    iou = mask_iou(up, target)[:, 0]
    expected = 2.0 * focal + 3.0 * dice + 5.0 * (scores[:, 0, 0] - iou) ** 2
    torch.testing.assert_close(out.per_object, expected)
    torch.testing.assert_close(out.total, expected.mean())


def test_no_objects_gives_a_zero_loss_with_a_graph() -> None:
    pred = torch.zeros(0, 1, 1, 8, 8, requires_grad=True)
    out = mask_losses(pred, torch.zeros(0, 1, 1), torch.zeros(0, 1, 32, 32, dtype=torch.bool))
    assert out.total.item() == 0.0 and out.total.requires_grad


def test_generalised_dice_against_a_hand_computation() -> None:
    """Issue 19, item 5: Sudre et al.'s generalised Dice over object and background, weights 1 / (area + 1)^2."""
    from garasam.train.losses import generalised_dice_loss

    targets = torch.zeros(1, 4, 4)
    targets[0, 0, :2] = 1  # a 2-pixel object, 14 background pixels
    logits = torch.full((1, 4, 4), -20.0)
    logits[0, 0, 0] = 20.0  # predicts one of the two object pixels, nothing else
    p = torch.sigmoid(logits)
    w_fg, w_bg = 1 / 3**2, 1 / 15**2
    numerator = w_fg * (p * targets).sum() + w_bg * ((1 - p) * (1 - targets)).sum()
    denominator = w_fg * (p + targets).sum() + w_bg * ((1 - p) + (1 - targets)).sum()
    expected = 1 - 2 * numerator / denominator
    torch.testing.assert_close(generalised_dice_loss(logits, targets), expected[None])
    # the small object weighs as much as the background: missing half of it costs far more than in soft Dice
    assert generalised_dice_loss(logits, targets) > dice_loss(logits, targets) / 2
    perfect = torch.where(targets > 0, 20.0, -20.0)
    assert generalised_dice_loss(perfect, targets).item() < 1e-6
    # padding outside the image counts for nothing, as in the other terms
    padded_logits = F.pad(logits, (0, 3, 0, 2), value=15.0)
    padded_targets = F.pad(targets, (0, 3, 0, 2))
    valid = valid_region(torch.tensor([[4, 4]]), 6, 7)[:, 0]
    torch.testing.assert_close(generalised_dice_loss(padded_logits, padded_targets, valid), expected[None])


def test_the_dice_kind_is_a_config_choice() -> None:
    from garasam.train.config import load_config
    from garasam.train.step import loss_weights

    configs = Path(__file__).resolve().parents[2] / "configs"
    assert loss_weights(load_config(configs / "tiny_gara.yaml")).dice_kind == "soft"
    chosen = load_config(configs / "tiny_gara.yaml", ["loss.dice=generalised"])
    assert loss_weights(chosen).dice_kind == "generalised"
    with pytest.raises(ConfigError, match="loss.dice"):
        load_config(configs / "tiny_gara.yaml", ["loss.dice=sudre"])
