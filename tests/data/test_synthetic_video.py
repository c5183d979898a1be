"""Synthetic clips: deterministic, every object promptable on frame 0, exact disjoint masks, objects
that move, turn, hide one another and leave the picture and come back; written in the frames + masks
layout that the clip reader reads back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from garasam.cli import main
from garasam.data.synthetic import FAMILIES
from garasam.data.synthetic_video import generate_clip, write_clips
from garasam.errors import ConfigError
from garasam.video.clips import read_frames_folder


@pytest.mark.parametrize("family", FAMILIES)
def test_clips_are_deterministic_and_their_masks_exact(family: str) -> None:
    clip = generate_clip(4, (96, 112), 6, family)
    again = generate_clip(4, (96, 112), 6, family)
    assert all(np.array_equal(a, b) for a, b in zip(clip.frames, again.frames, strict=True))
    assert len(clip.frames) == len(clip.masks) == 6 and clip.frames[0].shape == (96, 112, 3)
    ids = sorted(clip.masks[0])
    assert ids == list(range(1, len(ids) + 1)) and ids
    assert all(clip.masks[0][i].sum() >= 16 for i in ids)  # promptable on frame 0
    for masks in clip.masks:
        assert sorted(masks) == ids
        assert (sum(m.astype(int) for m in masks.values()) <= 1).all()  # disjoint after occlusion
    assert not np.array_equal(clip.frames[0], clip.frames[-1])


def test_objects_move_hide_and_come_back() -> None:
    """Over a few clips: an object absent on some frame is seen again later (it left the picture or
    was hidden, then returned), and masks change shape, not only place (turning and scaling)."""
    returned, reshaped = False, False
    for seed in range(8):
        clip = generate_clip(seed, (96, 96), 12, "target")
        for obj in clip.masks[0]:
            present = [bool(m[obj].any()) for m in clip.masks]
            if False in present and present[present.index(False) :].count(True):
                returned = True
            areas = {int(m[obj].sum()) for m in clip.masks if m[obj].any()}
            reshaped |= len(areas) > 3
    assert returned and reshaped


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"length": 0}, "at least one frame"),
        ({"size": (16, 64)}, "at least 32x32"),
        ({"family": "moon"}, "family must be one of"),
        ({"family": "zero_shot", "split": "train"}, "split"),
        ({"num_objects": (3, 2)}, "num_objects"),
    ],
)
def test_bad_settings_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        generate_clip(0, **{"size": (64, 64), **kwargs})


def test_written_clips_read_back_and_a_rerun_keeps_them(tmp_path: Path) -> None:
    assert write_clips(tmp_path, num=2, seed=5, size=(64, 64), length=4, family="zero_shot") == (2, 0)
    clips = read_frames_folder(tmp_path)
    assert [c.name for c in clips] == ["zero_shot_test_clip0000005", "zero_shot_test_clip0000006"]
    expected = generate_clip(5, (64, 64), 4, "zero_shot")
    assert len(clips[0]) == 4 and sorted(clips[0].annotations) == [0, 1, 2, 3]
    for index in range(4):
        read = clips[0].masks(index)
        wanted = {i: m for i, m in expected.masks[index].items() if m.any()}
        assert sorted(read) == sorted(wanted) and all(np.array_equal(read[i], wanted[i]) for i in wanted)
    assert write_clips(tmp_path, num=2, seed=5, size=(64, 64), length=4, family="zero_shot") == (0, 2)


def test_the_command_writes_clips_and_checks_its_flags(tmp_path: Path, capsys) -> None:
    out = tmp_path / "clips"
    assert main(["synth", "--video", "--num", "1", "--frames", "3", "--size", "48", "--out", str(out)]) == 0
    assert len(read_frames_folder(out)[0]) == 3
    assert main(["synth", "--video", "--num", "1", "--frames", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--frames" in capsys.readouterr().err and not (tmp_path / "x").exists()
