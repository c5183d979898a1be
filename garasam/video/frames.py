"""Where a tracker's frames come from, read one at a time, and how a frame becomes model input.

A `FrameSource` has a length and returns frame `i` as H x W x 3 uint8 RGB: a folder of images (in
natural order, so `2.jpg` comes before `10.jpg`), a video file decoded by PyAV (mp4, webm, avi, ...;
decoded sequentially, each frame once per pass), or frames already in memory. Every frame of a
source must have the first frame's size.

`frame_to_input` is SAM 2's video preprocessing (its `load_video_frames`): the frame stretched to the
model's square with Pillow's bicubic resampling, scaled to [0, 1] and normalised with ImageNet's
statistics, as the official `SAM2VideoPredictor` prepares frames.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from garasam.data.images import load_image
from garasam.data.transforms import PIXEL_MEAN, PIXEL_STD
from garasam.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mov", ".mkv", ".m4v")


class FrameSource:
    """Frames of one video, read on demand (never all in memory)."""

    name: str

    def __len__(self) -> int:
        raise NotImplementedError

    def frame(self, index: int) -> np.ndarray:
        """Frame `index` as H x W x 3 uint8 RGB."""
        raise NotImplementedError

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of every frame (the first frame's)."""
        return tuple(self.frame(0).shape[:2])  # type: ignore[return-value]


class ArrayFrames(FrameSource):
    """Frames already in memory (a list of H x W x 3 uint8 arrays, or one T x H x W x 3 array)."""

    def __init__(self, frames: Sequence[np.ndarray] | np.ndarray, name: str = "frames") -> None:
        self.name = name
        self._frames = list(frames)
        if not self._frames:
            raise DataError(f"{name}: no frames")
        for index, frame in enumerate(self._frames):
            _check_frame(frame, f"{name}: frame {index}", self._frames[0].shape)

    def __len__(self) -> int:
        return len(self._frames)

    def frame(self, index: int) -> np.ndarray:
        return self._frames[index]


class FolderFrames(FrameSource):
    """A folder of images, one per frame, in natural order of their names."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.name = self.folder.name
        if not self.folder.is_dir():
            raise DataError(f"{self.folder}: no such folder of frames")
        files = [p for p in self.folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise DataError(
                f"{self.folder}: no frames in this folder (expected {', '.join(IMAGE_SUFFIXES)} files)"
            )
        self.files = sorted(files, key=_natural_key)
        self._size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.files)

    def frame(self, index: int) -> np.ndarray:
        image = load_image(self.files[index])
        if self._size is None:
            self._size = tuple(load_image(self.files[0]).shape[:2]) if index else tuple(image.shape[:2])
        if tuple(image.shape[:2]) != self._size:
            raise DataError(
                f"{self.files[index]}: frame {index} is {image.shape[1]}x{image.shape[0]}, the video's "
                f"first frame {self._size[1]}x{self._size[0]}; every frame must have one size"
            )
        return image


class VideoFileFrames(FrameSource):
    """A video file decoded with PyAV. The frame count is found by one decoding pass on opening (a
    container's own count is often missing or wrong); frames are then decoded in order, and a frame
    before the last one read restarts decoding from the start."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.name = self.path.stem
        if not self.path.is_file():
            raise DataError(f"{self.path}: no such video file")
        self._container = None
        self._iterator = None
        self._next = 0
        self._count = sum(1 for _ in self._decode())
        if self._count == 0:
            raise DataError(f"{self.path}: the video has no frames PyAV can decode")
        self._close()

    def __len__(self) -> int:
        return self._count

    def frame(self, index: int) -> np.ndarray:
        if not 0 <= index < self._count:
            raise IndexError(f"{self.path}: frame {index} is past the end ({self._count} frames)")
        if self._iterator is None or index < self._next:
            self._close()
            self._iterator = self._decode()
            self._next = 0
        for image in self._iterator:
            self._next += 1
            if self._next - 1 == index:
                return image
        raise DataError(f"{self.path}: frame {index} could not be decoded")

    def _decode(self):
        import av  # optional dependency: garasam[video]

        try:
            self._container = av.open(str(self.path))
            stream = self._container.streams.video[0]
            for decoded in self._container.decode(stream):
                yield decoded.to_ndarray(format="rgb24")
        except (av.FFmpegError, IndexError) as err:
            raise DataError(f"{self.path}: PyAV cannot decode this video ({err})") from err

    def _close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = self._iterator = None

    def __del__(self) -> None:
        self._close()


def open_frames(source: str | os.PathLike | Sequence[np.ndarray] | np.ndarray | FrameSource) -> FrameSource:
    """A `FrameSource` for a video file, a folder of frames, or frames in memory."""
    if isinstance(source, FrameSource):
        return source
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.is_dir():
            return FolderFrames(path)
        if path.suffix.lower() in VIDEO_SUFFIXES or path.is_file():
            return VideoFileFrames(path)
        raise DataError(f"{path}: no such video file or folder of frames")
    return ArrayFrames(source)


def frame_to_input(frame: np.ndarray, image_size: int) -> torch.Tensor:
    """H x W x 3 uint8 -> the normalised [3, S, S] float32 input of a SAM 2 encoder of side S."""
    _check_frame(frame, "frame")
    resized = np.asarray(Image.fromarray(frame).resize((image_size, image_size), Image.Resampling.BICUBIC))
    pixels = torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1))).to(torch.float32)
    mean = torch.tensor(PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(PIXEL_STD).view(3, 1, 1)
    return (pixels - mean) / std


def _check_frame(frame: object, where: str, shape: tuple[int, ...] | None = None) -> None:
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        described = f"{frame.shape} {frame.dtype}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise DataError(f"{where}: expected an H x W x 3 uint8 RGB image, got {described}")
    if shape is not None and frame.shape != shape:
        raise DataError(
            f"{where}: is {frame.shape[1]}x{frame.shape[0]}, the first frame {shape[1]}x{shape[0]}"
        )


def _natural_key(path: Path) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]
