"""Writing a tracker's results: per-frame object-id PNGs (DAVIS's indexed encoding) and an overlay
video, each file whole or not at all (written beside its name, then renamed)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from garasam.errors import ConfigError
from garasam.io import atomic_path, atomic_write_bytes

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


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 10.0) -> int:
    """Encode RGB frames (every one the first's size) as an MPEG-4 video; returns the frame count."""
    import av  # optional dependency: garasam[video]

    count = 0
    suffix = Path(path).suffix.lstrip(".") or "mp4"
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format=suffix) as container:
        stream = None
        for frame in frames:
            if stream is None:
                stream = container.add_stream("mpeg4", rate=Fraction(fps).limit_denominator(1000))
                stream.height, stream.width = (frame.shape[0] // 2) * 2, (frame.shape[1] // 2) * 2
                stream.pix_fmt = "yuv420p"
                stream.bit_rate = 4_000_000
            even = np.ascontiguousarray(frame[: stream.height, : stream.width])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(even, format="rgb24")))
            count += 1
        if stream is not None:
            container.mux(stream.encode())
    return count
