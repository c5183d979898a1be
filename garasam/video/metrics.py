"""DAVIS's video-object-segmentation measures: J (region similarity) and F (boundary accuracy).

J is the intersection over union of a predicted and a ground-truth mask. F compares their
boundaries: a boundary pixel counts as matched when the other mask's boundary passes within a
tolerance of `bound_th` x the image diagonal (DAVIS: 0.008), rounded up to whole pixels; F is the
harmonic mean of the matched fractions of both boundaries. Two empty masks score 1 on both (DAVIS's
convention: nothing to find, nothing found), one empty mask against a non-empty one scores 0.
Per sequence, DAVIS reports each measure's mean, recall and decay (`statistics`) over the frames
between the first and the last (`sequence_measures`); J&F is the mean of J's and F's means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

DAVIS_BOUND_TH = 0.008


def region_similarity(prediction: np.ndarray, target: np.ndarray) -> float:
    """J: |P and G| / |P or G| of two boolean masks of one frame (1.0 when both are empty)."""
    prediction, target = _pair(prediction, target)
    union = np.logical_or(prediction, target).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(prediction, target).sum() / union)


def boundary_measure(prediction: np.ndarray, target: np.ndarray, bound_th: float = DAVIS_BOUND_TH) -> float:
    """F: the boundary F-measure of two boolean masks of one frame.

    `bound_th` below 1 is a fraction of the image diagonal, 1 or more a distance in pixels."""
    prediction, target = _pair(prediction, target)
    if not (math.isfinite(bound_th) and bound_th >= 0):
        raise ValueError(f"bound_th must be a finite number >= 0, got {bound_th}")
    radius = bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*prediction.shape))
    predicted_edge, target_edge = boundary_map(prediction), boundary_map(target)
    found, expected = int(predicted_edge.sum()), int(target_edge.sum())
    if found == 0 and expected == 0:
        return 1.0
    if found == 0 or expected == 0:
        return 0.0
    disk = _disk(int(radius))
    precision = np.logical_and(predicted_edge, _dilate(target_edge, disk)).sum() / found
    recall = np.logical_and(target_edge, _dilate(predicted_edge, disk)).sum() / expected
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """DAVIS's one-pixel boundary of a boolean mask: the pixels that differ from their right, lower
    or lower-right neighbour (inside the image: the last row looks right only, the last column down
    only, the corner nowhere), so the image's edge is no boundary."""
    mask = np.asarray(mask, dtype=bool)
    edge = np.zeros_like(mask)
    edge[:-1, :-1] = (
        (mask[:-1, :-1] != mask[:-1, 1:])
        | (mask[:-1, :-1] != mask[1:, :-1])
        | (mask[:-1, :-1] != mask[1:, 1:])
    )
    edge[-1, :-1] = mask[-1, :-1] != mask[-1, 1:]
    edge[:-1, -1] = mask[:-1, -1] != mask[1:, -1]
    return edge


def _disk(radius: int) -> np.ndarray:
    """uint8 structuring element of the pixels within `radius` of the centre (x^2 + y^2 <= r^2)."""
    offsets = np.arange(-radius, radius + 1)
    return (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius**2).astype(np.uint8)


def _dilate(edge: np.ndarray, disk: np.ndarray) -> np.ndarray:
    return cv2.dilate(edge.astype(np.uint8), disk, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0


def _pair(prediction: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prediction, target = np.asarray(prediction), np.asarray(target)
    if prediction.ndim != 2 or prediction.shape != target.shape:
        raise ValueError(
            f"expected two masks of one frame with the same H x W, got {prediction.shape} and {target.shape}"
        )
    return prediction.astype(bool), target.astype(bool)


@dataclass(frozen=True)
class Statistics:
    """DAVIS's summary of one measure over the frames of a sequence: its mean, its recall (the share
    of frames scoring above 0.5) and its decay (the mean of the first quarter of the frames minus
    that of the last quarter: how much the tracking degrades over time)."""

    mean: float
    recall: float
    decay: float


def statistics(per_frame: np.ndarray) -> Statistics:
    """`Statistics` of per-frame values (NaN frames, where an object is absent from both masks in a
    protocol that skips them, are left out)."""
    values = np.asarray(per_frame, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"expected a 1-D array of per-frame values, got shape {values.shape}")
    quarters = np.array_split(np.arange(values.size), 4)
    with np.errstate(invalid="ignore"):
        mean = float(np.nanmean(values)) if np.isfinite(values).any() else math.nan
        recall = float(np.nanmean(np.where(np.isnan(values), np.nan, values > 0.5)))
        first, last = (values[q][np.isfinite(values[q])] for q in (quarters[0], quarters[-1]))
        decay = float(first.mean() - last.mean()) if first.size and last.size else math.nan
    return Statistics(mean, recall, decay)


def sequence_measures(
    predictions: np.ndarray, targets: np.ndarray, bound_th: float = DAVIS_BOUND_TH, skip_ends: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """J and F per object and frame, `[objects, frames]` each, of boolean masks `[objects, frames,
    H, W]`. `skip_ends`: leave out the first frame (the given annotation in the semi-supervised
    protocol) and the last, as DAVIS 2017's evaluation does."""
    predictions, targets = np.asarray(predictions), np.asarray(targets)
    if predictions.ndim != 4 or predictions.shape != targets.shape:
        raise ValueError(
            f"expected predictions and targets [objects, frames, H, W] of one shape, got "
            f"{predictions.shape} and {targets.shape}"
        )
    if skip_ends:
        if predictions.shape[1] < 3:
            raise ValueError(f"skip_ends needs at least 3 frames, got {predictions.shape[1]}")
        predictions, targets = predictions[:, 1:-1], targets[:, 1:-1]
    objects, frames = predictions.shape[:2]
    region = np.empty((objects, frames))
    boundary = np.empty((objects, frames))
    for o in range(objects):
        for f in range(frames):
            region[o, f] = region_similarity(predictions[o, f], targets[o, f])
            boundary[o, f] = boundary_measure(predictions[o, f], targets[o, f], bound_th)
    return region, boundary
