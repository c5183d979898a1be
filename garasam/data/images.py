"""Reading and writing images and masks: what prediction, `synth` and `corrupt` need without a
dataset reader (any image a user gives, masks as .npy stacks, label maps as object masks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from garasam.errors import DataError
from garasam.io import atomic_path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def save_masks(path: str | Path, masks: list[np.ndarray] | np.ndarray) -> None:
    """Atomically write masks as one [N, H, W] bool .npy file."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.asarray(masks, dtype=bool), allow_pickle=False)


def save_jpeg(path: str | Path, image: np.ndarray, quality: int = 95) -> None:
    """Atomically write an H x W x 3 uint8 RGB image as JPEG (full-resolution chroma)."""
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(
            tmp, format="JPEG", quality=quality, subsampling=0
        )  # 4:4:4: keep colour edges


def load_image(path: str | Path) -> np.ndarray:
    """Read any image as H x W x 3 uint8 RGB in its displayed orientation (EXIF applied).

    Grayscale, palette, RGBA and 16-bit images are converted, so downstream code sees one format.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()  # decode now: a truncated file fails here, not later in a worker
            img = ImageOps.exif_transpose(img)
            if img.mode.startswith("I") or img.mode == "F":
                return _high_depth_to_rgb(np.asarray(img), img.mode)
            if img.mode in ("P", "PA"):
                img = img.convert("RGBA")
            return np.array(img.convert("RGB"), dtype=np.uint8)  # a writable copy
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: cannot read image ({err})") from None


def _high_depth_to_rgb(array: np.ndarray, mode: str) -> np.ndarray:
    """16-bit (and 32-bit integer) images map 0..65535 to 0..255; float images 0..1 (or 0..255) to 0..255."""
    values = array.astype(np.float64)
    if mode == "F" and values.size and float(values.max()) <= 1.0:
        values = values * 255.0
    elif mode != "F":
        values = values / 257.0
    gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def read_label_map(path: str | Path) -> tuple[np.ndarray, str]:
    """Read a mask / id PNG as an integer array without colour conversion, plus its PIL mode.

    Palette PNGs give their palette indices (the labels), not colours. RGB(A) masks keep their channels.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            array = np.asarray(img)
    except FileNotFoundError:
        raise DataError(f"{path}: mask file not found") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: cannot read mask ({err})") from None
    if array.dtype == bool:
        array = array.astype(np.uint8)
    return array, mode


def objects_from_label_map(array: np.ndarray, mode: str) -> tuple[list[int], list[np.ndarray]]:
    """Split a mask image into objects (see FolderReader for the rule)."""
    if array.ndim == 3:
        if array.shape[2] in (2, 4):  # LA / RGBA: ignore alpha
            array = array[..., :-1]
        if array.shape[2] == 1 or all(
            np.array_equal(array[..., 0], array[..., c]) for c in range(1, array.shape[2])
        ):
            array, mode = array[..., 0], "L"
        else:  # colour-coded labels
            array = (
                (array[..., 0].astype(np.int64) << 16) | (array[..., 1].astype(np.int64) << 8) | array[..., 2]
            )
            mode = "P"
    values = [int(v) for v in np.unique(array) if v != 0]
    if mode in ("L", "1") and 255 in values:  # 0/255 mask, possibly anti-aliased: threshold at half range
        return [1], [array >= 128]
    if mode in ("L", "1") and len(values) <= 1:  # 0/1 mask
        return [1], [array > 0]
    return values, [array == value for value in values]
