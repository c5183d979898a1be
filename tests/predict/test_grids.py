"""Crop boxes and point grids of automatic mask generation, against the official `segment_anything`
helpers (compared numerically; issue 20, item 4)."""

import numpy as np
import pytest

import tests.official_sam  # noqa: F401 - imports segment_anything with its torchvision stand-in
from garasam.errors import ConfigError
from garasam.predict.grids import crop_boxes, layer_grids, point_grid


def _amg():
    from segment_anything.utils import amg

    return amg


@pytest.mark.parametrize("side", [1, 4, 32])
def test_point_grid(side) -> None:
    np.testing.assert_allclose(point_grid(side), _amg().build_point_grid(side))


@pytest.mark.parametrize(
    "height, width, layers, ratio", [(90, 140, 1, 512 / 1500), (341, 512, 2, 512 / 1500), (512, 512, 3, 0.2)]
)
def test_crop_boxes_and_layer_grids(height, width, layers, ratio) -> None:
    boxes, layer_ids = _amg().generate_crop_boxes((height, width), layers, ratio)
    ours = crop_boxes(height, width, layers, ratio)
    assert [b for b, _ in ours] == [tuple(b) for b in boxes] and [layer for _, layer in ours] == layer_ids
    official = _amg().build_all_layer_point_grids(32, layers, 2)
    for theirs, mine in zip(official, layer_grids(32, layers, 2, None), strict=True):
        np.testing.assert_allclose(mine, theirs)


def test_grid_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="exactly one of points_per_side and point_grids"):
        layer_grids(None, 0, 1, None)
    with pytest.raises(ConfigError, match="one grid per crop layer"):
        layer_grids(None, 1, 1, [point_grid(2)])
    with pytest.raises(ConfigError, match=r"\(x, y\) in \[0, 1\]"):
        layer_grids(None, 0, 1, [np.array([[0.5, 1.5]])])
    with pytest.raises(ConfigError, match="leaves a layer without points"):
        layer_grids(4, 3, 2, None)
