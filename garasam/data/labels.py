"""Object-id label images: masks as one PNG whose pixel values are object ids (DAVIS's indexed
encoding, 0 background), written whole or not at all."""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from garasam.errors import ConfigError
from garasam.io import atomic_write_bytes

# DAVIS's palette: object 1 red, 2 green, 3 yellow, ... (the usual VOS annotation colours)
_PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128, 128, 0, 128, 0, 128, 128, 128, 128, 128]


def label_map(masks: dict[int, np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Object id per pixel (0 background) from boolean masks; where objects overlap, the later id wins."""
    labels = np.zeros(shape, np.uint8)
    for obj_id, mask in masks.items():
        if not 0 < obj_id < 255:
            raise ConfigError(f"object id {obj_id}: an indexed PNG holds ids 1 to 254")
        labels[np.asarray(mask, bool)] = obj_id
    return labels


def write_label_png(path: str | os.PathLike, labels: np.ndarray) -> None:
    """An indexed PNG whose pixel values are object ids (readable by `garasam.video.clips`)."""
    image = Image.fromarray(labels, mode="P")
    image.putpalette(_PALETTE + [255] * (768 - len(_PALETTE)))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
