"""SAM's image geometry in NumPy and Pillow, for the exported models (no torch).

The same numbers as `garasam.data.transforms.SamTransform`: SAM 1's families resize the longest side
to the input size with Pillow's bilinear filter, normalise and zero pad bottom/right; SAM 2
(`square`) stretches the image to the square. Prompts are scaled into that frame; mask logits go
back to the original size with bilinear interpolation as torch's `F.interpolate(mode="bilinear",
align_corners=False)` computes it (SAM 1: through the input square, cropped to the image).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

# garasam.data.transforms' PIXEL_MEAN / PIXEL_STD, restated here because that module imports torch
# (tests/deploy checks that they agree)
PIXEL_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
PIXEL_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)


def input_size(original: tuple[int, int], side: int, square: bool = False) -> tuple[int, int]:
    """(h, w) after scaling the longest side to `side`, rounded as SAM does (`square`: side x side)."""
    if square:
        return side, side
    scale = side * 1.0 / max(original)
    return int(original[0] * scale + 0.5), int(original[1] * scale + 0.5)


def preprocess(image: np.ndarray, side: int, square: bool = False) -> tuple[np.ndarray, tuple[int, int]]:
    """H x W x 3 uint8 -> the float32 [1, 3, side, side] encoder input, and the resized (h, w)."""
    height, width = input_size(image.shape[:2], side, square)
    resized = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))
    pixels = np.zeros((1, 3, side, side), dtype=np.float32)
    pixels[0, :, :height, :width] = ((resized.astype(np.float32) - PIXEL_MEAN) / PIXEL_STD).transpose(2, 0, 1)
    return pixels, (height, width)


def valid_tokens(resized: tuple[int, int], grid: int, patch: int) -> np.ndarray:
    """bool [1, grid, grid]: the tokens whose patch holds image pixels (the gates pool over these)."""
    rows = np.arange(grid)
    return ((rows[:, None] < -(-resized[0] // patch)) & (rows[None, :] < -(-resized[1] // patch)))[None]


def scale_coords(
    coords: np.ndarray, original: tuple[int, int], side: int, square: bool = False
) -> np.ndarray:
    """(x, y) points [..., 2] in the original image -> the resized frame."""
    new_h, new_w = input_size(original, side, square)
    return np.asarray(coords, dtype=np.float64) * np.array([new_w / original[1], new_h / original[0]])


def resize_bilinear(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[..., h, w] -> [..., H, W], half-pixel centres, no antialiasing (torch's bilinear)."""
    out = logits.astype(np.float32)
    for axis, new in ((-2, size[0]), (-1, size[1])):
        old = out.shape[axis]
        if old == new:
            continue
        source = np.maximum((np.arange(new, dtype=np.float64) + 0.5) * (old / new) - 0.5, 0.0)
        low = np.minimum(np.floor(source).astype(np.int64), old - 1)
        high = np.minimum(low + 1, old - 1)
        weight = (source - low).astype(np.float32)
        shape = [1] * out.ndim
        shape[axis] = new
        weight = weight.reshape(shape)
        out = np.take(out, low, axis=axis) * (1 - weight) + np.take(out, high, axis=axis) * weight
    return out


def postprocess(
    low_res: np.ndarray,
    resized: tuple[int, int],
    original: tuple[int, int],
    side: int,
    square: bool = False,
) -> np.ndarray:
    """Low-resolution logits [C, h', w'] -> logits [C, H, W] in the original image (SAM's recipe;
    `square`: SAM 2's logits cover the whole stretched image)."""
    if square:
        return resize_bilinear(low_res, original)
    square_logits = resize_bilinear(low_res, (side, side))
    return resize_bilinear(square_logits[..., : resized[0], : resized[1]], original)
