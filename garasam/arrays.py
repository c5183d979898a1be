"""Checks of the array arguments of the Python API, shared by the PyTorch predictor and the exported
(torch-free) one: a bad argument is a DataError naming it, never a NumPy or torch traceback."""

from __future__ import annotations

import numpy as np

from garasam.errors import ConfigError, DataError


def rgb_image(image: object, image_format: str = "RGB") -> np.ndarray:
    """An H x W x 3 uint8 image (RGB, or BGR as OpenCV reads it) as a contiguous RGB array."""
    if image_format not in ("RGB", "BGR"):
        raise ConfigError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8 or min(array.shape[:2]) < 1:
        raise DataError(f"expected an H x W x 3 uint8 image, got shape {array.shape} {array.dtype}")
    return np.ascontiguousarray(array[..., ::-1]) if image_format == "BGR" else array


def finite(value: object, name: str) -> np.ndarray:
    """`value` as a float array, refused when it is not numbers or holds NaN / inf."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{name}: expected numbers, got {type(value).__name__} ({err})") from None
    if not np.isfinite(array).all():
        raise DataError(f"{name} holds non-finite values (NaN or inf)")
    return array


def points(coords: object, labels: object) -> tuple[np.ndarray, np.ndarray]:
    """Points [N, 2] with their labels [N]: 1 foreground, 0 background, -1 padding (SAM's convention)."""
    if labels is None:
        raise DataError("point_labels must be given with point_coords")
    xy, kinds = finite(coords, "point_coords"), finite(labels, "point_labels")
    if xy.ndim != 2 or xy.shape[1] != 2 or kinds.shape != (len(xy),):
        raise DataError(
            f"expected point_coords [N, 2] and point_labels [N], got {xy.shape} and {kinds.shape}"
        )
    if not np.isin(kinds, (-1, 0, 1)).all():
        raise DataError(
            f"point_labels must be 1 (foreground), 0 (background) or -1 (padding), got {kinds.tolist()}"
        )
    return xy, kinds.astype(np.int64)


def box(value: object) -> np.ndarray:
    """One XYXY box [4] with x0 < x1 and y0 < y1."""
    array = finite(value, "box")
    if array.size != 4:
        raise DataError(f"expected one XYXY box of 4 numbers, got shape {array.shape}")
    x0, y0, x1, y1 = array.reshape(4)
    if x1 <= x0 or y1 <= y0:
        raise DataError(f"box {array.reshape(4).tolist()}: expected x0 < x1 and y0 < y1 (XYXY)")
    return array.reshape(4)


def mask_input(value: object, size: tuple[int, int]) -> np.ndarray:
    """A low-resolution logits map [1, h, w] as `predict` returned it, float32."""
    array = finite(value, "mask_input")
    if array.shape != (1, *size):
        raise DataError(
            f"mask_input: expected [1, {size[0]}, {size[1]}] (a low-resolution logits map predict "
            f"returned), got {list(array.shape)}"
        )
    return array.astype(np.float32)


def flags(**values: object) -> None:
    """Each value is True or False (a string "yes" is neither)."""
    for name, value in values.items():
        if not isinstance(value, bool | np.bool_):
            raise DataError(f"{name} must be True or False, got {value!r}")
