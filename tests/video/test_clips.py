"""Clips on disk (DAVIS and a frames + masks folder), fabricated in the real layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from garasam.errors import DataError
from garasam.video.clips import read_davis, read_frames_folder


def _frame(path: Path, size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), 120, dtype=np.uint8)).save(path)


def _labels(path: Path, labels: np.ndarray, mode: str = "P") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(labels.astype(np.uint8), mode="L")
    if mode == "P":
        image = image.convert("P")
        image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [255] * (256 * 3 - 9))
    image.save(path)


def _davis(root: Path, frames: int = 3, two_objects: bool = True) -> Path:
    for f in range(frames):
        _frame(root / "JPEGImages" / "480p" / "bear" / f"{f:05d}.jpg")
        labels = np.zeros((30, 40), dtype=np.uint8)
        labels[5:15, 5 + f : 15 + f] = 1
        if two_objects:
            labels[20:25, 20:30] = 2
            labels[0, 0] = 255  # void
        else:
            labels = np.where(labels > 0, 255, 0)
        _labels(root / "Annotations" / "480p" / "bear" / f"{f:05d}.png", labels, "P" if two_objects else "L")
    return root


def test_davis_2017_objects_and_void(tmp_path) -> None:
    (clip,) = read_davis(_davis(tmp_path))
    assert clip.name == "bear" and len(clip) == 3 and clip.object_ids() == [1, 2]
    masks = clip.masks(2)
    assert masks[1].sum() == 100 and masks[1][5, 7] and not masks[1][5, 6]
    assert not any(m[0, 0] for m in masks.values())  # void belongs to no object
    assert clip.frame(0).shape == (30, 40, 3)


def test_davis_2016_single_object_is_object_1(tmp_path) -> None:
    (clip,) = read_davis(_davis(tmp_path, two_objects=False))
    assert clip.object_ids() == [1] and clip.masks(0)[1].sum() == 100


def test_sparse_frames_and_masks_folder(tmp_path) -> None:
    for f in range(4):
        _frame(tmp_path / "walk" / "frames" / f"{f:03d}.jpg")
    labels = np.zeros((30, 40), dtype=np.uint8)
    labels[2:6, 2:6] = 3
    _labels(tmp_path / "walk" / "masks" / "000.png", labels)
    _labels(tmp_path / "walk" / "masks" / "002.png", labels)
    (clip,) = read_frames_folder(tmp_path)
    assert sorted(clip.annotations) == [0, 2] and clip.masks(1) == {} and clip.object_ids() == [3]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (r / "Annotations" / "480p" / "bear" / "00001.png").unlink(), r"00001.png: missing"),
        (
            lambda r: _frame(r / "JPEGImages" / "480p" / "bear" / "00001.jpg", (41, 30)),
            r"mask is 40x30, its frame 41x30",
        ),
        (
            lambda r: _labels(r / "Annotations" / "480p" / "bear" / "00009.png", np.zeros((30, 40))),
            r"masks without a frame: 00009.png",
        ),
        (
            lambda r: Image.new("RGB", (40, 30)).save(r / "Annotations" / "480p" / "bear" / "00000.png"),
            r"00000.png: a mask must be an indexed",
        ),
        (
            lambda r: (r / "Annotations" / "480p" / "bear" / "00002.png").write_bytes(b"not a png"),
            r"00002.png: unreadable mask",
        ),
    ],
    ids=["missing_mask", "size_mismatch", "stray_mask", "rgb_mask", "broken_png"],
)
def test_bad_davis_folders_are_named(tmp_path, damage, message) -> None:
    root = _davis(tmp_path)
    damage(root)
    with pytest.raises(DataError, match=message):
        for clip in read_davis(root):
            clip.object_ids()
            clip.masks(1)


def test_missing_layouts_are_named(tmp_path) -> None:
    with pytest.raises(DataError, match="JPEGImages/480p and Annotations/480p"):
        read_davis(tmp_path)
    with pytest.raises(DataError, match="no <sequence>/frames folders"):
        read_frames_folder(tmp_path)
