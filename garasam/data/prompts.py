"""Point and box prompts from ground-truth masks, in SAM's conventions.

Points are (x, y) pixel indices (column, row; SAM's prompt encoder adds the half-pixel shift itself),
labels 1 = foreground and 0 = background; boxes are XYXY with inclusive pixel indices (as SAM's
`batched_mask_to_box`). Training samples random prompts (paper: 1-3 positive points or the GT box with
up to 10% jitter); evaluation uses one deterministic prompt per object so every model sees the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from garasam.errors import ConfigError

PromptKind = Literal["point", "box"]


@dataclass
class Prompt:
    """Exactly one of `points` (with `labels`) or `box` is set."""

    points: np.ndarray | None = None  # float32 [K, 2], (x, y)
    labels: np.ndarray | None = None  # int64 [K], 1 foreground / 0 background
    box: np.ndarray | None = None  # float32 [4], XYXY

    def __post_init__(self) -> None:
        if (self.points is None) == (self.box is None):
            raise ValueError("a Prompt has either points or a box, not both or neither")
        if (self.points is None) != (self.labels is None):
            raise ValueError("points and labels go together")
        if self.points is not None and len(self.points) != len(self.labels):
            raise ValueError(f"{len(self.points)} points but {len(self.labels)} labels")

    @property
    def kind(self) -> PromptKind:
        return "box" if self.box is not None else "point"


def _nonempty(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    if not mask.any():
        raise ValueError("cannot place a prompt on an empty mask")
    return mask


def sample_points(
    mask: np.ndarray, k: int, rng: np.random.Generator, negatives: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """`k` foreground points inside `mask` and `negatives` background points outside it.

    Points are drawn uniformly without replacement (with replacement if the region is smaller).
    Returns coords float32 [k + negatives, 2] as (x, y) and labels int64 (1s first, then 0s).
    """
    mask = _nonempty(mask)
    if k < 0 or negatives < 0:
        raise ValueError(f"point counts must be >= 0, got k={k}, negatives={negatives}")
    chosen = [_draw(np.flatnonzero(mask), k, rng)]
    if negatives:
        outside = np.flatnonzero(~mask)
        if outside.size == 0:
            raise ValueError("cannot sample negative points: the mask covers the whole image")
        chosen.append(_draw(outside, negatives, rng))
    flat = np.concatenate(chosen)
    rows, cols = np.unravel_index(flat, mask.shape)
    coords = np.stack([cols, rows], axis=1).astype(np.float32)
    labels = np.concatenate([np.ones(k, np.int64), np.zeros(negatives, np.int64)])
    return coords, labels


def _draw(candidates: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    return rng.choice(candidates, size=count, replace=count > candidates.size)


def interior_point(mask: np.ndarray) -> tuple[int, int]:
    """The most interior pixel (x, y) of `mask`: the maximum of the distance transform.

    The mask is padded with background so the image border counts as an edge (a full-image mask gives
    its centre). Ties go to the maximum nearest the maxima's centroid, then to raster order.
    """
    mask = _nonempty(mask)
    padded = np.pad(mask, 1).astype(np.uint8)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    rows, cols = np.nonzero(distance == distance.max())
    offsets = (rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2
    best = int(np.argmin(offsets))  # argmin keeps raster order among equal offsets
    return int(cols[best]), int(rows[best])


def mask_box(mask: np.ndarray, jitter: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Tight XYXY box of `mask` (inclusive pixel indices), float32 [4].

    With `jitter > 0` each side moves by up to `jitter` times the box width (x) or height (y),
    uniformly, and the box is clipped to the image.
    """
    mask = _nonempty(mask)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    box = np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)
    if jitter > 0:
        if rng is None:
            raise ValueError("mask_box with jitter needs an rng")
        width, height = box[2] - box[0] + 1, box[3] - box[1] + 1
        scale = np.array([width, height, width, height]) * jitter
        box = box + rng.uniform(-1.0, 1.0, size=4) * scale
        box[[0, 2]] = np.clip(np.sort(box[[0, 2]]), 0, mask.shape[1] - 1)
        box[[1, 3]] = np.clip(np.sort(box[[1, 3]]), 0, mask.shape[0] - 1)
    return box.astype(np.float32)


def random_prompt(
    mask: np.ndarray,
    rng: np.random.Generator,
    max_points: int = 3,
    box_jitter: float = 0.1,
    p_box: float = 0.5,
) -> Prompt:
    """A training prompt: the jittered GT box with probability `p_box`, else 1..max_points positive points."""
    if rng.random() < p_box:
        return Prompt(box=mask_box(mask, box_jitter, rng))
    coords, labels = sample_points(mask, int(rng.integers(1, max_points + 1)), rng)
    return Prompt(points=coords, labels=labels)


def eval_prompt(mask: np.ndarray, kind: PromptKind) -> Prompt:
    """The evaluation prompt: the single most interior point, or the tight GT box. Deterministic."""
    if kind == "point":
        x, y = interior_point(mask)
        return Prompt(points=np.array([[x, y]], dtype=np.float32), labels=np.ones(1, np.int64))
    if kind == "box":
        return Prompt(box=mask_box(mask))
    raise ConfigError(f"prompt kind must be 'point' or 'box', got {kind!r}")
