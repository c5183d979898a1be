"""COCO segmentations (polygons, RLE) to masks, checked before pycocotools sees them.

pycocotools trusts its input. A polygon vertex at 1e12 makes it rasterise an edge of 1e12 pixels (the
process is killed); a compressed `counts` string that ends mid-number, holds characters
outside its alphabet or whose runs do not add up to height x width decodes into memory it never
wrote (an 8 x 8 mask from the string "xx" sums to thousands), a silent wrong mask. The string format
(pycocotools' `rleFrString`): each run is a signed little-endian number in 5-bit groups, character
= 48 + group, bit 0x20 = another group follows, bit 0x10 of the last group = negative; from the third
run on, each is stored as the difference to the run two before it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

_FIRST, _LAST = 48, 48 + 63  # '0' .. 'o'


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """The uint8 H x W mask of one annotation's `segmentation`; ValueError or TypeError where the
    segmentation is malformed or does not fit the image."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, list):
        # pycocotools reads a 4-number list as a box, so polygons of fewer than 3 points are dropped
        polygons = [check_polygon(p, height, width) for p in segmentation]
        polygons = [p for p in polygons if len(p) >= 6]
        if not polygons:
            return np.zeros((height, width), np.uint8)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(segmentation, dict):
        if list(segmentation.get("size", ())) != [height, width]:
            raise ValueError(
                f"RLE size {segmentation.get('size')} differs from the image's {[height, width]}"
            )
        counts = segmentation.get("counts")
        if isinstance(counts, list):  # uncompressed: encoded by pycocotools first
            if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
                raise ValueError("uncompressed RLE counts must be integers")
            check_runs(counts, height, width)
            rle = mask_utils.frPyObjects(segmentation, height, width)
        elif isinstance(counts, str | bytes):
            check_runs(compressed_runs(counts), height, width)
            rle = {"size": [height, width], "counts": counts}
        else:
            raise ValueError(f"RLE counts must be a list or a string, got {type(counts).__name__}")
    else:
        raise ValueError(
            f"a segmentation is a list of polygons or an RLE object, got {type(segmentation).__name__}"
        )
    with warnings.catch_warnings():  # pycocotools' RLE object predates NumPy 2's copy keyword
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle)


def check_polygon(polygon: Any, height: int, width: int) -> list[float]:
    """x0, y0, x1, y1, ... as finite numbers, none further outside the image than its own size."""
    if not isinstance(polygon, list) or len(polygon) % 2:
        raise ValueError("a polygon is a flat list of x, y coordinates")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in polygon):
        raise ValueError("polygon coordinates must be numbers")
    values = np.asarray(polygon, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError("polygon coordinates must be finite")
    xs, ys = values[0::2], values[1::2]
    if xs.size and (xs.min() < -width or xs.max() > 2 * width or ys.min() < -height or ys.max() > 2 * height):
        raise ValueError(f"polygon reaches far outside the {width}x{height} image")
    return [float(v) for v in polygon]


def compressed_runs(counts: str | bytes) -> list[int]:
    """The run lengths of a compressed `counts` string; ValueError where it is malformed."""
    text = counts.decode("ascii", errors="replace") if isinstance(counts, bytes) else counts
    runs: list[int] = []
    value = shift = 0
    for char in text:
        code = ord(char)
        if not _FIRST <= code <= _LAST:
            raise ValueError(f"character {char!r} is not part of a compressed RLE string")
        group = code - _FIRST
        value |= (group & 0x1F) << shift
        shift += 5
        if group & 0x20:
            continue
        if group & 0x10:
            value -= 1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
        value = shift = 0
    if shift:
        raise ValueError("the string ends in the middle of a run length")
    return runs


def check_runs(runs: Sequence[int], height: int, width: int) -> None:
    """Runs must be non-negative and cover the mask exactly."""
    if any(run < 0 for run in runs):
        raise ValueError("negative run length")
    if sum(runs) != height * width:
        raise ValueError(f"run lengths add up to {sum(runs)}, not {height} x {width} = {height * width}")
