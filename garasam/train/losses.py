"""SAM's mask losses: focal + dice on upsampled logits, IoU-head MSE, best-of-multimask selection.

Shared by adapter training and the tiny-SAM pretraining script. Logits are upsampled bilinearly from
SAM's low-resolution output to the target's frame (the padded input frame, e.g. 1024 x 1024) and
compared there; `input_sizes` restricts every term to the real image, so padding never counts.
All arithmetic runs in float32 whatever the autocast dtype of the logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossWeights:
    """SAM / RobustSAM weighting: 20 x focal + 1 x dice (+ IoU-head MSE)."""

    focal: float = 20.0
    dice: float = 1.0
    iou: float = 1.0
    gamma: float = 2.0
    alpha: float = 0.25
    dice_kind: str = (
        "soft"  # "soft" (SAM, RobustSAM) or "generalised" (Sudre et al. 2017, the paper's citation)
    )


@dataclass(frozen=True)
class MaskLosses:
    """Per-object terms of the chosen mask; `total` is their weighted sum, averaged over objects."""

    total: torch.Tensor  # scalar
    per_object: torch.Tensor  # [N] weighted loss of each object's chosen mask
    focal: torch.Tensor  # [N]
    dice: torch.Tensor  # [N]
    iou_mse: torch.Tensor  # [N]
    iou: torch.Tensor  # [N] IoU of the chosen (binarised) mask with the target, no gradient
    chosen: torch.Tensor  # [N] index of the chosen mask among the M outputs


def sigmoid_focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    gamma: float = 2.0,
    alpha: float = 0.25,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Focal loss (Lin et al.) averaged over the last two axes (over `valid` pixels when given)."""
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return _mean(loss, valid)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """1 - soft Dice over the last two axes, with SAM's +1 smoothing (an empty target is no NaN)."""
    prob = torch.sigmoid(logits)
    if valid is not None:
        prob = prob * valid
        targets = targets * valid
    inter = (prob * targets).sum((-2, -1))
    return 1 - (2 * inter + 1) / (prob.sum((-2, -1)) + targets.sum((-2, -1)) + 1)


def generalised_dice_loss(
    logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """1 - generalised Dice (Sudre et al. 2017) over the object and the background, each class weighted by
    1 / (its target area + 1)^2, so a small object counts as much as the large background around it."""
    prob = torch.sigmoid(logits)
    inside = 1.0 if valid is None else valid
    numerator = denominator = 0.0
    for p, t in ((prob * inside, targets * inside), ((1 - prob) * inside, (1 - targets) * inside)):
        weight = 1.0 / (t.sum((-2, -1)) + 1) ** 2
        numerator = numerator + weight * (p * t).sum((-2, -1))
        denominator = denominator + weight * (p + t).sum((-2, -1))
    return 1 - 2 * numerator / denominator


DICE_LOSSES = {"soft": dice_loss, "generalised": generalised_dice_loss}


def mask_iou(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """IoU of `logits > 0` with binary `targets` over the last two axes; empty vs empty counts as 1."""
    pred = logits > 0
    target = targets > 0.5
    if valid is not None:
        pred = pred & (valid > 0.5)
        target = target & (valid > 0.5)
    inter = (pred & target).sum((-2, -1)).float()
    union = (pred | target).sum((-2, -1)).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def valid_region(input_sizes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Float [N, 1, H, W]: 1 inside each object's image (`input_sizes` [N, 2] as (h, w)), 0 on padding."""
    rows = torch.arange(height, device=input_sizes.device)
    cols = torch.arange(width, device=input_sizes.device)
    inside = (rows[None, :, None] < input_sizes[:, 0, None, None]) & (
        cols[None, None, :] < input_sizes[:, 1, None, None]
    )
    return inside[:, None].float()


def mask_losses(
    pred_masks: torch.Tensor,
    iou_scores: torch.Tensor,
    masks: torch.Tensor,
    best_of: bool = True,
    *,
    input_sizes: torch.Tensor | None = None,
    weights: LossWeights | None = None,
) -> MaskLosses:
    """Loss of SAM's outputs `pred_masks` [..., M, h, w] / `iou_scores` [..., M] against `masks` [..., H, W].

    Leading axes (e.g. [B, P]) are objects. With `best_of` and M > 1 only the mask with the lowest
    focal + dice loss is trained (SAM's ambiguity-aware recipe); otherwise the M masks are averaged.
    `input_sizes` [..., 2] gives each object's image size (h, w) inside the padded frame.
    """
    weights = weights or LossWeights()
    height, width = masks.shape[-2:]
    num_masks, low_h, low_w = pred_masks.shape[-3:]
    logits = pred_masks.reshape(-1, num_masks, low_h, low_w).float()
    count = logits.shape[0]
    if count == 0:
        zero = pred_masks.sum() * 0.0
        empty = zero.new_zeros(0)
        return MaskLosses(zero, empty, empty, empty, empty, empty, empty.long())
    if (low_h, low_w) != (height, width):
        logits = F.interpolate(logits, (height, width), mode="bilinear", align_corners=False)
    targets = masks.reshape(count, 1, height, width).float().expand(-1, num_masks, -1, -1)
    valid = valid_region(input_sizes.reshape(count, 2), height, width) if input_sizes is not None else None

    focal = sigmoid_focal_loss(logits, targets, weights.gamma, weights.alpha, valid)
    dice = DICE_LOSSES[weights.dice_kind](logits, targets, valid)
    with torch.no_grad():
        iou = mask_iou(logits, targets, valid)
    iou_mse = (iou_scores.reshape(count, num_masks).float() - iou) ** 2
    mask_term = weights.focal * focal + weights.dice * dice

    if best_of and num_masks > 1:
        chosen = mask_term.detach().argmin(dim=1)
        pick = chosen[:, None]
        focal, dice, iou, iou_mse = (t.gather(1, pick)[:, 0] for t in (focal, dice, iou, iou_mse))
    else:
        chosen = torch.zeros(count, dtype=torch.long, device=logits.device)
        focal, dice, iou, iou_mse = (t.mean(1) for t in (focal, dice, iou, iou_mse))
    per_object = weights.focal * focal + weights.dice * dice + weights.iou * iou_mse
    return MaskLosses(
        total=per_object.mean(),
        per_object=per_object,
        focal=focal,
        dice=dice,
        iou_mse=iou_mse,
        iou=iou,
        chosen=chosen,
    )


def _mean(loss: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    if valid is None:
        return loss.mean((-2, -1))
    return (loss * valid).sum((-2, -1)) / valid.sum((-2, -1)).clamp(min=1)
