"""Clips degraded coherently in time: constant degradations keep their parameters over the clip,
noise is redrawn per frame, rain and snow move, and the intensity curve blends smoothly."""

from __future__ import annotations

import numpy as np
import pytest

from garasam.data.degradations import get_degradation, get_suite
from garasam.data.degradations.temporal import (
    degrade_clip,
    frame_seed,
    intensity_curve,
    temporal_behaviour,
)
from garasam.errors import DataError

FRAME = np.random.default_rng(0).integers(0, 256, (40, 48, 3)).astype(np.uint8)
SUITES = [(suite, d.name) for suite in ("robustseg", "imagenet-c") for d in get_suite(suite)]


@pytest.mark.parametrize(("suite", "name"), SUITES)
def test_each_degradation_behaves_in_time_as_declared(suite: str, name: str) -> None:
    degradation = get_degradation(suite, name)
    severity = max(degradation.severities)
    out, _ = degrade_clip(degradation, [FRAME] * 3, seed=5, severity=severity)
    again, _ = degrade_clip(degradation, [FRAME] * 3, seed=5, severity=severity)
    assert all(np.array_equal(a, b) for a, b in zip(out, again, strict=True))  # reproducible
    same = [np.array_equal(out[0], frame) for frame in out[1:]]
    if temporal_behaviour(degradation) == "constant":
        assert all(same)  # a still scene stays still: fog, blur, jitter do not flicker
    else:
        assert not any(same)  # noise redrawn, rain and snow moved


@pytest.mark.parametrize(
    ("suite", "name"), [("robustseg", "rain"), ("robustseg", "snow"), ("imagenet-c", "snow")]
)
def test_rain_and_snow_streaks_move_with_one_velocity(suite: str, name: str) -> None:
    """On a uniform clip the streak layer of frame t is frame 0's shifted by the clip's velocity."""
    gray = np.full((64, 64, 3), 128, np.uint8)
    degradation = get_degradation(suite, name)
    out, _ = degrade_clip(degradation, [gray] * 4, seed=11, severity=max(degradation.severities))
    layer = [frame.astype(int) for frame in out]

    def mismatch(t: int, dy: int, dx: int) -> float:
        """How far frame t is from frame 0 moved down by dy and right by dx (inner area)."""
        return np.abs(layer[t][6 + dy : 40 + dy, 12 + dx : 52 + dx] - layer[0][6:40, 12:52]).mean()

    shifts = [
        min(((dy, dx) for dy in range(0, 20) for dx in range(-6, 7)), key=lambda s: mismatch(t, *s))
        for t in (1, 2, 3)
    ]
    assert all(mismatch(t, *shift) == 0 for t, shift in zip((1, 2, 3), shifts, strict=True))
    assert shifts[0][0] > 0 and shifts[2][0] >= shifts[1][0] >= shifts[0][0]  # downwards, further each frame


def test_the_intensity_curve_is_smooth_bounded_and_seeded() -> None:
    curve = intensity_curve(60, seed=3, low=0.2)
    assert curve.min() == pytest.approx(0.2) and curve.max() == pytest.approx(1.0)
    assert np.abs(np.diff(curve)).max() < 0.3  # no jumps between frames
    assert np.array_equal(curve, intensity_curve(60, seed=3, low=0.2))
    assert not np.array_equal(curve, intensity_curve(60, seed=4, low=0.2))
    assert intensity_curve(1, seed=0).shape == (1,)


def test_the_intensity_blends_clean_and_degraded() -> None:
    fog = get_degradation("robustseg", "fog")
    full, _ = degrade_clip(fog, [FRAME] * 3, seed=1)
    mixed, _ = degrade_clip(fog, [FRAME] * 3, seed=1, intensity=[0.0, 0.5, 1.0])
    assert np.array_equal(mixed[0], FRAME) and np.array_equal(mixed[2], full[2])
    expected = np.rint(0.5 * full[1].astype(np.float32) + 0.5 * FRAME.astype(np.float32))
    assert np.abs(mixed[1].astype(int) - expected.astype(int)).max() <= 1


def test_elastic_warps_every_frame_and_its_masks_alike() -> None:
    elastic = get_degradation("imagenet-c", "elastic_transform")
    mask = np.zeros((1, 40, 48), bool)
    mask[0, 10:30, 10:30] = True
    frames, masks = degrade_clip(elastic, [FRAME] * 2, seed=2, severity=5, masks=[mask, mask])
    assert np.array_equal(frames[0], frames[1]) and np.array_equal(masks[0], masks[1])
    assert not np.array_equal(masks[0], mask)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frames": []}, "needs frames"),
        ({"frames": [FRAME, FRAME[:20]]}, "frame 1 must be uint8 48x40x3 like frame 0"),
        ({"frames": [FRAME, FRAME.astype(np.float32)]}, "frame 1 must be uint8"),
        ({"masks": [None]}, "1 masks for 2 frames"),
        ({"intensity": [0.5]}, "one weight in \\[0, 1\\] per frame"),
        ({"intensity": [0.5, 1.5]}, "one weight in \\[0, 1\\] per frame"),
        ({"intensity": [0.5, float("nan")]}, "one weight in \\[0, 1\\] per frame"),
    ],
)
def test_bad_clips_are_named(kwargs: dict, message: str) -> None:
    arguments = {"frames": [FRAME, FRAME], "seed": 0, **kwargs}
    with pytest.raises(DataError, match=message):
        degrade_clip(get_degradation("robustseg", "fog"), **arguments)


def test_a_geometric_degradation_refuses_a_curve() -> None:
    with pytest.raises(DataError, match="takes no intensity curve"):
        degrade_clip(get_degradation("robustseg", "elastic_transform"), [FRAME], 0, intensity=[0.5])


def test_frame_seeds_differ_and_repeat() -> None:
    assert frame_seed(1, 0) != frame_seed(1, 1) != frame_seed(2, 1)
    assert frame_seed(1, 1) == frame_seed(1, 1)
