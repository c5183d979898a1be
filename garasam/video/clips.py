"""Video clips on disk: the frames of a sequence in order and its (possibly sparse) object masks.

Layouts read here:
- DAVIS 2016 / 2017: `JPEGImages/<resolution>/<sequence>/<frame>.jpg` and
  `Annotations/<resolution>/<sequence>/<frame>.png`, indexed PNGs whose value is the object id
  (0 background; DAVIS 2016's single object is 255, read as object 1; 255 is void in 2017 when
  other ids exist). Every frame is annotated.
- A frames + masks folder: `<root>/<sequence>/frames/*.{jpg,png}` and `<root>/<sequence>/masks/*.png`
  named as the frames they annotate, the same indexed encoding; frames without a mask file are
  unannotated (YouTube-VOS and MOSE annotate sparsely).
- YouTube-VOS 2019 and MOSE splits: `<split>/JPEGImages/<video>/*.jpg` and
  `<split>/Annotations/<video>/*.png` (sparse: every 5th frame in YouTube-VOS train, the first
  frame of each object in the validation splits), with YouTube-VOS's `meta.json` checked against
  the masks when present (every object it lists must be annotated on its first listed frame).

A clip is lazy: it lists files; frames and masks are read when asked for, one at a time, so a long
video never sits in memory whole.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from garasam.data.images import load_image
from garasam.errors import DataError

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
VOID = 255


@dataclass(frozen=True)
class Clip:
    """One sequence: its frame files in order and, per annotated frame index, its mask file."""

    name: str
    frames: tuple[Path, ...]
    annotations: dict[int, Path]

    def __len__(self) -> int:
        return len(self.frames)

    def frame(self, index: int) -> np.ndarray:
        """Frame `index` as H x W x 3 uint8 RGB."""
        return load_image(self.frames[index])

    def masks(self, index: int) -> dict[int, np.ndarray]:
        """Object id -> boolean mask of frame `index` (empty when the frame is not annotated)."""
        path = self.annotations.get(index)
        if path is None:
            return {}
        labels = read_label_png(path)
        with Image.open(self.frames[index]) as image:  # the header only: no decoding
            size = image.size[::-1]
        if labels.shape != size:
            raise DataError(
                f"{path}: mask is {labels.shape[1]}x{labels.shape[0]}, its frame {size[1]}x{size[0]}"
            )
        ids = [int(i) for i in np.unique(labels) if i != 0]
        if ids == [VOID]:  # DAVIS 2016: one object written as 255
            return {1: labels == VOID}
        return {i: labels == i for i in ids if i != VOID}

    def object_ids(self) -> list[int]:
        """The ids of every object annotated in any frame, sorted."""
        ids: set[int] = set()
        for index in self.annotations:
            ids.update(self.masks(index))
        return sorted(ids)


def read_label_png(path: Path) -> np.ndarray:
    """An indexed (palette) or grayscale PNG as its raw values, uint8 H x W."""
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in ("P", "L"):
                raise DataError(
                    f"{path}: a mask must be an indexed (palette) or grayscale PNG, got mode {image.mode}"
                )
            return np.asarray(image, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: mask file not found") from None
    except OSError as err:
        raise DataError(f"{path}: unreadable mask ({err})") from None


def read_davis(root: str | os.PathLike, resolution: str = "480p") -> list[Clip]:
    """Every sequence of a DAVIS folder (the one holding JPEGImages/ and Annotations/)."""
    root = Path(root)
    frames_root, masks_root = root / "JPEGImages" / resolution, root / "Annotations" / resolution
    for folder in (frames_root, masks_root):
        if not folder.is_dir():
            raise DataError(
                f"{folder}: not found; a DAVIS folder holds JPEGImages/{resolution} and Annotations/{resolution}"
            )
    clips = []
    for sequence in sorted(p for p in frames_root.iterdir() if p.is_dir()):
        clips.append(_clip(sequence.name, sequence, masks_root / sequence.name, require_all=True))
    if not clips:
        raise DataError(f"{frames_root}: no sequence folders")
    return clips


def read_frames_folder(root: str | os.PathLike) -> list[Clip]:
    """Every sequence of a `<sequence>/frames` + `<sequence>/masks` folder."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not found")
    sequences = sorted(p for p in root.iterdir() if (p / "frames").is_dir())
    if not sequences:
        raise DataError(f"{root}: no <sequence>/frames folders")
    return [_clip(s.name, s / "frames", s / "masks", require_all=False) for s in sequences]


def read_vos_folder(root: str | os.PathLike) -> list[Clip]:
    """Every video of a YouTube-VOS or MOSE split folder (the one holding JPEGImages/ and Annotations/)."""
    root = Path(root)
    frames_root, masks_root = root / "JPEGImages", root / "Annotations"
    for folder in (frames_root, masks_root):
        if not folder.is_dir():
            raise DataError(
                f"{folder}: not found; a YouTube-VOS or MOSE split holds JPEGImages/ and Annotations/"
            )
    videos = sorted(p.name for p in frames_root.iterdir() if p.is_dir())
    if not videos:
        raise DataError(f"{frames_root}: no video folders")
    clips = [_clip(v, frames_root / v, masks_root / v, require_all=False) for v in videos]
    meta = root / "meta.json"
    if meta.is_file():
        _check_meta(meta, {c.name: c for c in clips})
    return clips


def _check_meta(path: Path, clips: dict[str, Clip]) -> None:
    """YouTube-VOS's meta.json: each listed object is annotated on the first frame listed for it."""
    import json

    try:
        videos = json.loads(path.read_text(encoding="utf-8"))["videos"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path}: unreadable meta.json ({err})") from None
    for name, entry in videos.items():
        clip = clips.get(name)
        if clip is None:
            raise DataError(f"{path}: lists video {name}, which has no JPEGImages/{name} folder")
        stems = {frame.stem: index for index, frame in enumerate(clip.frames)}
        for obj_id, obj in (entry.get("objects") or {}).items():
            first = (obj.get("frames") or [None])[0]
            if first not in stems or stems[first] not in clip.annotations:
                raise DataError(f"{path}: {name} object {obj_id} has no mask on its first frame {first}")
            if int(obj_id) not in clip.masks(stems[first]):
                raise DataError(
                    f"{clip.annotations[stems[first]]}: object {obj_id} of meta.json is not in this mask"
                )


# video dataset readers by the name used in `--data <reader>:<path>`
READERS = {
    "davis": read_davis,
    "frames": read_frames_folder,
    "youtube-vos": read_vos_folder,
    "mose": read_vos_folder,
}


def open_clips(data: str) -> list[Clip]:
    """`davis:PATH` (DAVIS 2016/2017), `frames:PATH` (`<sequence>/frames` + `<sequence>/masks`),
    `youtube-vos:PATH` or `mose:PATH` (a split folder with JPEGImages/ and Annotations/)."""
    reader, sep, path = data.partition(":")
    if not sep or reader not in READERS:
        raise DataError(f"--data {data!r}: give <reader>:<path> with a video reader ({', '.join(READERS)})")
    return READERS[reader](path)


def _clip(name: str, frames_dir: Path, masks_dir: Path, require_all: bool) -> Clip:
    frames = tuple(sorted(p for p in frames_dir.iterdir() if p.suffix.lower() in FRAME_SUFFIXES))
    if not frames:
        raise DataError(f"{frames_dir}: no frames ({', '.join(FRAME_SUFFIXES)})")
    annotations = {}
    for index, frame in enumerate(frames):
        mask = masks_dir / f"{frame.stem}.png"
        if mask.is_file():
            annotations[index] = mask
        elif require_all:
            raise DataError(f"{mask}: missing; every frame of a DAVIS sequence is annotated")
    if not annotations:
        raise DataError(f"{masks_dir}: no mask of any frame of {name}")
    stems = {frame.stem for frame in frames}
    strays = sorted(p.name for p in masks_dir.glob("*.png") if p.stem not in stems)
    if strays:
        raise DataError(f"{masks_dir}: masks without a frame: {', '.join(strays[:5])}")
    return Clip(name, frames, annotations)
