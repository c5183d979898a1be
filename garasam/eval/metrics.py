"""Per-object segmentation metrics: IoU, Dice, pixel accuracy and boundary IoU, in torch.

All four take a predicted and a ground-truth mask stack of the same shape `[N, H, W]` at the original
image resolution and return one value per object, in [0, 1]. A ratio whose denominator is empty (an
empty prediction for an empty ground truth) counts as a perfect match, 1.0, so a mean never sees NaN.

Boundary IoU follows Cheng et al., "Boundary IoU: Improving Object-Centric Image Segmentation
Evaluation" (CVPR 2021) and their reference `mask_to_boundary`: the boundary region of a mask is the
mask minus its erosion by a (2d+1) x (2d+1) square, d = round(0.02 x image diagonal), at least 1
pixel, with everything outside the image counting as background (so a mask touching the border has a
boundary there); boundary IoU is the IoU of the two boundary regions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

METRICS: tuple[str, ...] = ("iou", "dice", "pixel_acc", "boundary_iou")
METRIC_LABELS: dict[str, str] = {
    "iou": "IoU",
    "dice": "Dice",
    "pixel_acc": "pixel accuracy",
    "boundary_iou": "boundary IoU",
}
DEFAULT_DILATION_RATIO = 0.02


def boundary_width(height: int, width: int, dilation_ratio: float = DEFAULT_DILATION_RATIO) -> int:
    """The boundary band width d in pixels: round(ratio x image diagonal), at least 1."""
    return max(1, int(round(dilation_ratio * math.hypot(height, width))))


def _as_masks(masks: torch.Tensor | np.ndarray) -> torch.Tensor:
    masks = torch.as_tensor(masks)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3:
        raise ValueError(f"expected masks [N, H, W] or [H, W], got shape {list(masks.shape)}")
    return masks.bool()


def erode(masks: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary erosion of bool masks [N, H, W] by a (2r+1) square; outside the image is background.

    Equals `radius` iterations of a 3x3 erosion (cv2.erode in the reference code). A pixel survives
    when its whole window is inside the mask, i.e. when the window's sum, read from an integral
    image, is (2r+1)^2: linear in the pixels whatever the radius, on any device.
    """
    if radius < 1:
        return masks.clone()
    size = 2 * radius + 1
    padded = F.pad(masks.to(torch.int32), (radius + 1, radius, radius + 1, radius))
    integral = padded.cumsum(1).cumsum(2)
    window = (
        integral[:, size:, size:]
        - integral[:, :-size, size:]
        - integral[:, size:, :-size]
        + integral[:, :-size, :-size]
    )
    return window == size * size


def mask_boundary(masks: torch.Tensor | np.ndarray, width: int) -> torch.Tensor:
    """The inner boundary band of each mask [N, H, W] (or one [H, W]): the mask minus its erosion."""
    single = masks.ndim == 2
    masks = _as_masks(masks)
    band = masks & ~erode(masks, width)
    return band[0] if single else band


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """numerator / denominator per object, 1.0 where the denominator is 0 (nothing to get wrong)."""
    numerator, denominator = numerator.double(), denominator.double()
    safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
    return torch.where(denominator > 0, numerator / safe, torch.ones_like(denominator))


def _iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    inter = (a & b).flatten(1).sum(1)
    union = (a | b).flatten(1).sum(1)
    return _ratio(inter, union)


def mask_metrics(
    pred: torch.Tensor | np.ndarray,
    gt: torch.Tensor | np.ndarray,
    dilation_ratio: float = DEFAULT_DILATION_RATIO,
    gt_boundary: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """IoU, Dice, pixel accuracy and boundary IoU of each predicted mask against its ground truth.

    `pred` and `gt` are bool [N, H, W] (or [H, W]) on the same device. Returns float64 [N] per metric.
    `gt_boundary` may pass `mask_boundary(gt, d)` precomputed, since every model and prompt of one image
    is scored against the same ground truth.
    """
    pred, gt = _as_masks(pred), _as_masks(gt).to(pred.device)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {list(pred.shape)} and ground truth {list(gt.shape)} differ in shape")
    height, width = gt.shape[-2:]
    inter = (pred & gt).flatten(1).sum(1)
    sizes = pred.flatten(1).sum(1) + gt.flatten(1).sum(1)
    wrong = (pred ^ gt).flatten(1).sum(1)
    d = boundary_width(height, width, dilation_ratio)
    if gt_boundary is None:
        gt_boundary = mask_boundary(gt, d)
    return {
        "iou": _ratio(inter, sizes - inter),
        "dice": _ratio(2 * inter, sizes),
        "pixel_acc": 1.0 - wrong.double() / float(height * width),
        "boundary_iou": _iou(mask_boundary(pred, d), gt_boundary),
    }


# IoU thresholds of COCO's mask AP, 0.50:0.05:0.95.
AP_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def average_precision(
    ious: Sequence[float] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    thresholds: Sequence[float] = AP_THRESHOLDS,
) -> float:
    """Mask AP of prompted predictions: one prediction per ground-truth object, ranked by its score.

    Promptable segmentation has no false detections to find, so AP measures how well the model's own
    confidence (SAM's predicted IoU) ranks its good masks above its bad ones: at each threshold t, the
    predictions are sorted by score, one with IoU >= t is a true positive, and the precision-recall
    curve (recall over all objects) is averaged at COCO's 101 recall points with COCO's interpolation;
    the result is the mean over `thresholds`. Ties in score keep the objects' order.
    """
    ious = np.asarray(ious, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if ious.shape != scores.shape or ious.ndim != 1:
        raise ValueError(f"need one score per IoU, got {ious.shape} and {scores.shape}")
    if ious.size == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    ranked = ious[order]
    recall_points = np.linspace(0.0, 1.0, 101)
    values = []
    for t in thresholds:
        hits = np.cumsum(ranked >= t - 1e-12)
        precision = hits / np.arange(1, ranked.size + 1)
        recall = hits / ranked.size
        precision = np.maximum.accumulate(precision[::-1])[::-1]  # COCO's interpolation
        index = np.searchsorted(recall, recall_points, side="left")
        values.append(
            np.where(index < ranked.size, precision[np.minimum(index, ranked.size - 1)], 0.0).mean()
        )
    return float(np.mean(values))
