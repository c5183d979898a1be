"""Where automatic mask generation prompts: crop boxes over the image and a grid of points per crop.

SAM's scheme: layer 0 is the whole image; layer i (1..n) tiles it with 2**i x 2**i overlapping crops,
the overlap shrinking with the layer. Each layer prompts a regular grid (points at the centres of
an n x n tiling of the crop, in [0, 1] crop coordinates) of `points_per_side / downscale**i` points a side,
or the caller's own grids.
"""

from __future__ import annotations

import math

import numpy as np

from garasam.errors import ConfigError


def point_grid(points_per_side: int) -> np.ndarray:
    """[n * n, 2] (x, y) in [0, 1]: the centres of an n x n tiling, x varying fastest."""
    centres = (np.arange(points_per_side) + 0.5) / points_per_side
    xs, ys = np.meshgrid(centres, centres)
    return np.stack([xs.ravel(), ys.ravel()], axis=-1)


def layer_grids(
    points_per_side: int | None, crop_n_layers: int, downscale: int, point_grids: list[np.ndarray] | None
) -> list[np.ndarray]:
    """One grid per crop layer (0..crop_n_layers): the caller's, or regular ones shrinking by `downscale`."""
    if (points_per_side is None) == (point_grids is None):
        raise ConfigError("give exactly one of points_per_side and point_grids")
    if point_grids is not None:
        grids = [np.asarray(g, dtype=np.float64) for g in point_grids]
        if len(grids) != crop_n_layers + 1:
            raise ConfigError(
                f"point_grids needs one grid per crop layer: {crop_n_layers + 1}, got {len(grids)}"
            )
        for grid in grids:
            if (
                grid.ndim != 2
                or grid.shape[1] != 2
                or not np.isfinite(grid).all()
                or (grid < 0).any()
                or (grid > 1).any()
            ):
                raise ConfigError("every point grid is an [N, 2] array of (x, y) in [0, 1]")
        return grids
    sides = [int(points_per_side / downscale**layer) for layer in range(crop_n_layers + 1)]
    if min(sides) < 1:
        raise ConfigError(
            f"points_per_side {points_per_side} / crop_n_points_downscale_factor {downscale}**{crop_n_layers} "
            "leaves a layer without points"
        )
    return [point_grid(side) for side in sides]


def crop_boxes(
    height: int, width: int, crop_n_layers: int, overlap_ratio: float
) -> list[tuple[tuple[int, ...], int]]:
    """(x0, y0, x1, y1) boxes with their layer: the whole image, then each layer's overlapping tiles."""
    boxes = [((0, 0, width, height), 0)]
    for layer in range(1, crop_n_layers + 1):
        per_side = 2**layer
        overlap = int(overlap_ratio * min(height, width) * 2 / per_side)
        crop_w = math.ceil((width + overlap * (per_side - 1)) / per_side)
        crop_h = math.ceil((height + overlap * (per_side - 1)) / per_side)
        for x0 in (int((crop_w - overlap) * i) for i in range(per_side)):
            for y0 in (int((crop_h - overlap) * j) for j in range(per_side)):
                boxes.append(((x0, y0, min(x0 + crop_w, width), min(y0 + crop_h, height)), layer))
    return boxes
