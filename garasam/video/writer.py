"""Writing a tracker's overlay video, whole or not at all (written beside its name, then renamed);
its per-frame object-id PNGs are `garasam.data.labels`'."""

from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

from garasam.io import atomic_path

# The codec per container: MPEG-4 Part 2 for .mp4 (every player; no patent-encumbered encoder), VP8
# for .webm (what browsers play: the web page's videos).
CODECS = {"mp4": "mpeg4", "webm": "libvpx"}


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 10.0) -> int:
    """Encode RGB frames (every one the first's size) as .mp4 or .webm; returns the frame count."""
    import av  # optional dependency: garasam[video]

    count = 0
    suffix = Path(path).suffix.lstrip(".").lower() or "mp4"
    if suffix not in CODECS:
        raise ValueError(f"{path}: write_video writes {' or '.join(f'.{s}' for s in CODECS)} files")
    with atomic_path(path) as tmp, av.open(str(tmp), "w", format=suffix) as container:
        stream = None
        for frame in frames:
            if stream is None:
                stream = container.add_stream(CODECS[suffix], rate=Fraction(fps).limit_denominator(1000))
                stream.height, stream.width = (frame.shape[0] // 2) * 2, (frame.shape[1] // 2) * 2
                stream.pix_fmt = "yuv420p"
                stream.bit_rate = 4_000_000
            even = np.ascontiguousarray(frame[: stream.height, : stream.width])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(even, format="rgb24")))
            count += 1
        if stream is not None:
            container.mux(stream.encode())
    return count
