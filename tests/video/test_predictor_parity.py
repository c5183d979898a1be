"""`garasam.VideoPredictor` against the official `sam2.SAM2VideoPredictor` on the same random
`sam2.1_mini` weights (saved as Meta's `.pt`) and the same JPEG frames: masks of every frame of an
8-frame clip with three objects (point, box and mask prompts on frame 0), a correction click on a
tracked frame and the propagation after it, and reverse propagation from a later prompt.

Tolerance: random SAM 2 logits reach about a thousand, so float32 rounding is judged against the
peak (RELATIVE x the largest logit); a pixel's sign may differ only where the official logit is
within that tolerance of 0 (measured: no pixel differs; largest difference 4e-6 of the peak).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from garasam.models import build_sam
from garasam.video.predictor import VideoPredictor
from tests.official_sam2 import official_mini_sam2

RELATIVE = 2e-5
HEIGHT, WIDTH, FRAMES = 120, 160, 8


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    root = tmp_path_factory.mktemp("parity")
    torch.manual_seed(0)
    official = official_mini_sam2(video=True)
    torch.save({"model": official.state_dict()}, root / "sam2.1_mini.pt")
    ours = VideoPredictor(build_sam("sam2.1_mini", root / "sam2.1_mini.pt", video=True))
    frames = root / "frames"  # the official reader wants <index>.jpg files
    frames.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    for t in range(FRAMES):  # a disc moving right, a box moving left and down, noise
        image = np.full((HEIGHT, WIDTH, 3), 40.0)
        image[(xx - 40 - 5 * t) ** 2 + (yy - 60) ** 2 < 400] = (200, 60, 60)
        image[(abs(xx - 110 + 3 * t) < 15) & (abs(yy - 50 - 2 * t) < 20)] = (60, 200, 90)
        image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(frames / f"{t:05d}.jpg", quality=95)
    return official, ours, frames


def _same(official: tuple, ours: tuple) -> None:
    (frame_a, ids_a, masks_a), (frame_b, ids_b, masks_b) = official, ours
    assert frame_b == frame_a and list(ids_b) == list(ids_a)
    assert masks_b.shape == masks_a.shape == (len(ids_a), 1, HEIGHT, WIDTH)
    tolerance = RELATIVE * masks_a.abs().max().item()
    assert (masks_b - masks_a).abs().max().item() <= tolerance, f"frame {frame_a}"
    flipped = (masks_b > 0) != (masks_a > 0)
    assert (masks_a[flipped].abs() <= tolerance).all(), f"frame {frame_a}: a confident pixel flipped"


def _propagate(official, ours, state_a, state_b, **kwargs) -> int:
    frames = 0
    for a, b in zip(
        official.propagate_in_video(state_a, **kwargs),
        ours.propagate_in_video(state_b, **kwargs),
        strict=True,
    ):
        _same(a, b)
        frames += 1
    return frames


def _states(official, ours, frames: Path) -> tuple:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the official reader's tqdm and CUDA-extension notices
        return official.init_state(str(frames)), ours.init_state(frames)


def test_prompts_propagation_and_a_correction_match(setup: tuple) -> None:
    official, ours, frames = setup
    a, b = _states(official, ours, frames)
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[5:25, 5:30] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calls = [
            ("add_new_points_or_box", (0, 1), {"points": [[40, 60], [50, 62]], "labels": [1, 0]}),
            ("add_new_points_or_box", (0, 2), {"box": [95, 30, 125, 70]}),
            ("add_new_mask", (0, 3, mask), {}),
        ]
        for method, args, kwargs in calls:
            _same(getattr(official, method)(a, *args, **kwargs), getattr(ours, method)(b, *args, **kwargs))
        assert _propagate(official, ours, a, b) == FRAMES
        correction = {"points": [[30, 60]], "labels": [1], "clear_old_points": False}
        _same(
            official.add_new_points_or_box(a, 5, 1, **correction),
            ours.add_new_points_or_box(b, 5, 1, **correction),
        )
        assert _propagate(official, ours, a, b) == FRAMES


def test_reverse_propagation_matches(setup: tuple) -> None:
    official, ours, frames = setup
    a, b = _states(official, ours, frames)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _same(
            official.add_new_points_or_box(a, 4, 1, points=[[20, 60]], labels=[1]),
            ours.add_new_points_or_box(b, 4, 1, points=[[20, 60]], labels=[1]),
        )
        _same(
            official.add_new_points_or_box(a, 4, 2, box=[85, 35, 115, 80]),
            ours.add_new_points_or_box(b, 4, 2, box=[85, 35, 115, 80]),
        )
        assert _propagate(official, ours, a, b, reverse=True) == 5
        assert _propagate(official, ours, a, b, start_frame_idx=4) == 4
