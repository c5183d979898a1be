"""Tests for garasam.data.degradations: the contract of every degradation, then what each one does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from garasam.data.degradations import (
    CLEAN,
    SUITES,
    Degradation,
    folder_name,
    get_degradation,
    get_suite,
    list_degradations,
    seed_for,
)
from garasam.errors import DataError

H, W = 64, 80
SEEDS = [11, 12]
ALL = list_degradations()
ROBUSTSEG = get_suite("robustseg")
IMAGENET_C = get_suite("imagenet-c")


def _ids(degradations: list[Degradation]) -> list[str]:
    return [f"{d.suite}/{d.name}" for d in degradations]


def _textured(seed: int) -> torch.Tensor:
    """Stripes in three directions plus noise: lots of high-frequency energy, no clipping."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(
        torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij"
    )
    base = torch.stack(
        [
            128 + 50 * torch.sin(0.9 * xx + 0.4 * yy),
            128 + 50 * torch.cos(1.1 * yy - 0.3 * xx),
            128 + 50 * torch.sin(0.7 * (xx + yy)),
        ]
    )
    return (base + 20 * torch.randn(3, H, W, generator=gen)).clamp(0, 255).round().to(torch.uint8)


def _smooth() -> torch.Tensor:
    """Gentle colour ramps: almost no local variance, far from 0 and 255."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, H), torch.linspace(0, 1, W), indexing="ij")
    return torch.stack([90 + 60 * xx, 100 + 40 * yy, 110 + 15 * (xx + yy)]).round().to(torch.uint8)


def _halves() -> torch.Tensor:
    """Dark left half, bright right half: contrast is the gap between the two means."""
    image = torch.full((3, H, W), 40, dtype=torch.uint8)
    image[:, :, W // 2 :] = 215
    return image


TEXTURED = torch.stack([_textured(0), _textured(1)])
SMOOTH = torch.stack([_smooth(), _smooth().flip(-1)])
HALVES = torch.stack([_halves(), _halves()])


def _high_pass_energy(images: torch.Tensor) -> float:
    """Mean squared discrete Laplacian: what noise adds and blur removes."""
    x = images.float()
    lap = 4 * x[..., 1:-1, 1:-1] - x[..., :-2, 1:-1] - x[..., 2:, 1:-1] - x[..., 1:-1, :-2] - x[..., 1:-1, 2:]
    return lap.pow(2).mean().item()


def _halves_contrast(images: torch.Tensor) -> float:
    x = images.float()
    return (x[..., W // 2 :].mean() - x[..., : W // 2].mean()).item()


def _block_edge_ratio(images: torch.Tensor) -> float:
    """Mean horizontal step across 8x8 block boundaries over the mean step inside blocks."""
    steps = (images.float()[..., 1:] - images.float()[..., :-1]).abs().mean(dim=(0, 1, 2))
    at_boundary = torch.arange(W - 1) % 8 == 7
    return (steps[at_boundary].mean() / steps[~at_boundary].mean()).item()


def _mean_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().mean().item()


def _sorted_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Distance between the two pixel histograms (mean gap between sorted values)."""
    return _mean_abs_diff(a.flatten().sort().values, b.flatten().sort().values)


# ---------------------------------------------------------------- registry


def test_robustseg_suite_is_the_reference_table_in_order() -> None:
    assert [d.name for d in ROBUSTSEG] == [
        "snow",
        "fog",
        "rain",
        "gauss_noise",
        "ISO_noise",
        "impulse_noise",
        "resampling_blur",
        "motion_blur",
        "zoom_blur",
        "color_jitter",
        "compression",
        "elastic_transform",
        "frosted_glass_blur",
        "brightness",
        "contrast",
    ]
    assert all(d.severities == (1,) and d.default_severity == 1 for d in ROBUSTSEG)
    assert [d.name for d in ROBUSTSEG if d.geometric] == ["elastic_transform"]


def test_imagenet_c_suite_has_19_corruptions_at_5_severities() -> None:
    from imagecorruptions import get_corruption_names

    assert [d.name for d in IMAGENET_C] == get_corruption_names("all")
    assert all(d.severities == (1, 2, 3, 4, 5) and d.default_severity == 3 for d in IMAGENET_C)
    assert [d.name for d in IMAGENET_C if d.geometric] == ["elastic_transform"]


def test_lookup_and_listing() -> None:
    assert SUITES == ("robustseg", "imagenet-c")
    assert get_degradation("robustseg", "ISO_noise").name == "ISO_noise"
    assert get_degradation("imagenet-c", "frost").suite == "imagenet-c"
    for suite in SUITES:
        assert get_degradation(suite, "clean") is CLEAN
        assert CLEAN not in get_suite(suite)
    listed = list_degradations()
    assert listed[0] is CLEAN and len(listed) == 1 + 15 + 19


def test_unknown_names_raise_data_error_listing_valid_ones() -> None:
    with pytest.raises(DataError, match="imagenet-c"):
        get_suite("imagenet")
    with pytest.raises(DataError, match="gauss_noise"):
        get_degradation("robustseg", "gaussian_noise")
    with pytest.raises(DataError, match="robustseg"):
        get_degradation("nope", "clean")


def test_seed_for_is_stable_and_separates_its_inputs() -> None:
    # A fixed value: the seed must not change between processes, runs or releases.
    assert seed_for("img_001", "fog") == 2049982763
    seeds = {
        seed_for("img_001", "fog"),
        seed_for("img_002", "fog"),
        seed_for("img_001", "snow"),
        seed_for("img_001", "fog", severity=2),
        seed_for("img_001", "fog", base_seed=1),
    }
    assert len(seeds) == 5
    assert all(0 <= s < 2**32 for s in seeds)


def test_folder_names() -> None:
    assert folder_name(get_degradation("robustseg", "ISO_noise"), 1) == "ISO_noise"
    assert folder_name(get_degradation("imagenet-c", "fog"), 3) == "fog_s3"
    assert folder_name(CLEAN, 0) == "clean"
    with pytest.raises(DataError, match="severity"):
        folder_name(get_degradation("imagenet-c", "fog"), 6)


# ---------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    ("images", "seeds", "kwargs", "message"),
    [
        (TEXTURED.float(), SEEDS, {}, "uint8"),
        (TEXTURED[:, :1], SEEDS, {}, "3 RGB channels"),
        (TEXTURED, [1], {}, "1 seeds for 2 images"),
        (TEXTURED, SEEDS, {"severity": 3}, "severity 3"),
        (TEXTURED, SEEDS, {"masks": [torch.zeros(1, H, W, dtype=torch.bool)]}, "1 mask tensors"),
        (TEXTURED, SEEDS, {"masks": [torch.zeros(1, H, W)] * 2}, r"masks\[0\] must be bool"),
    ],
)
def test_bad_inputs_raise_data_error(
    images: torch.Tensor, seeds: list[int], kwargs: dict, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        get_degradation("robustseg", "gauss_noise")(images, seeds, **kwargs)


def test_imagenet_c_refuses_images_below_32_px() -> None:
    with pytest.raises(DataError, match="32 px"):
        get_degradation("imagenet-c", "fog")(TEXTURED[..., :16, :], SEEDS)


# ---------------------------------------------------------------- contract of every degradation


@pytest.mark.parametrize("d", ALL, ids=_ids(ALL))
def test_keeps_shape_dtype_device_and_input(d: Degradation) -> None:
    before = TEXTURED.clone()
    masks = [torch.zeros(2, H, W, dtype=torch.bool), torch.ones(1, H, W, dtype=torch.bool)]
    out, out_masks = d(TEXTURED, SEEDS, masks=masks)
    assert out.shape == TEXTURED.shape and out.dtype == torch.uint8 and out.device == TEXTURED.device
    assert torch.equal(TEXTURED, before), "the input batch was modified in place"
    assert out_masks is not None and [m.shape for m in out_masks] == [m.shape for m in masks]
    assert all(m.dtype == torch.bool for m in out_masks)
    if not d.geometric:
        assert out_masks is masks
    if d.name != "clean":
        assert not torch.equal(out, TEXTURED)


@pytest.mark.parametrize("d", ALL, ids=_ids(ALL))
def test_same_seed_same_output_and_seed_matters_only_when_stochastic(d: Degradation) -> None:
    first, _ = d(TEXTURED, SEEDS)
    again, _ = d(TEXTURED, SEEDS)
    other, _ = d(TEXTURED, [s + 100 for s in SEEDS])
    assert torch.equal(first, again)
    assert torch.equal(first, other) != d.stochastic


@pytest.mark.parametrize("d", ALL, ids=_ids(ALL))
def test_batch_equals_image_by_image(d: Degradation) -> None:
    batched, _ = d(TEXTURED, SEEDS)
    single = torch.cat([d(TEXTURED[i : i + 1], [seed])[0] for i, seed in enumerate(SEEDS)])
    assert torch.equal(batched, single)


@pytest.mark.parametrize("d", ROBUSTSEG, ids=_ids(ROBUSTSEG))
@pytest.mark.parametrize(("height", "width"), [(17, 45), (96, 24)])
def test_robustseg_runs_on_small_non_square_single_images(d: Degradation, height: int, width: int) -> None:
    image = TEXTURED[:1, :, :height, :width].contiguous()
    out, _ = d(image, [3])
    assert out.shape == image.shape


def test_empty_batch_is_returned_as_is() -> None:
    out, masks = get_degradation("robustseg", "fog")(TEXTURED[:0], [])
    assert out.shape == (0, 3, H, W) and masks is None


# ---------------------------------------------------------------- robustseg: what each one does


def _raises_high_pass_energy_on_smooth(d: Degradation) -> None:
    out, _ = d(SMOOTH, SEEDS)
    assert _high_pass_energy(out) > 50 * _high_pass_energy(SMOOTH) + 50


def _lowers_high_pass_energy_on_textured(d: Degradation) -> None:
    out, _ = d(TEXTURED, SEEDS)
    assert _high_pass_energy(out) < 0.5 * _high_pass_energy(TEXTURED)


def _brightens_and_flattens(d: Degradation) -> None:
    out, _ = d(HALVES, SEEDS)
    assert out.float().mean() > HALVES.float().mean() + 20
    assert _halves_contrast(out) < 0.9 * _halves_contrast(HALVES)


def _adds_bright_streaks(d: Degradation) -> None:
    dark = torch.full_like(TEXTURED, 30)
    out, _ = d(dark, SEEDS)
    assert out.float().mean() > 35 and (out > 100).float().mean() > 0.01


def _lowers_mean(d: Degradation) -> None:
    out, _ = d(TEXTURED, SEEDS)
    assert out.float().mean() < 0.85 * TEXTURED.float().mean()


def _raises_std(d: Degradation) -> None:
    out, _ = d(TEXTURED, SEEDS)
    assert out.float().std() > 1.4 * TEXTURED.float().std()


def _changes_colour_statistics(d: Degradation) -> None:
    out, _ = d(TEXTURED, SEEDS)
    stats = lambda x: torch.cat([x.float().mean(dim=(2, 3)), x.float().std(dim=(2, 3))], dim=1)  # noqa: E731
    assert (stats(out) - stats(TEXTURED)).abs().mean() > 5


def _adds_8x8_blocks(d: Degradation) -> None:
    out, _ = d(SMOOTH, SEEDS)
    assert _block_edge_ratio(out) > 3 * _block_edge_ratio(SMOOTH)


def _moves_pixels_keeps_histogram(d: Degradation) -> None:
    out, _ = d(TEXTURED, SEEDS)
    moved = _mean_abs_diff(out, TEXTURED)
    assert moved > 10
    assert _sorted_diff(out, TEXTURED) < 0.2 * moved


EXPECTED_EFFECT = {
    "snow": _brightens_and_flattens,
    "fog": _brightens_and_flattens,
    "rain": _adds_bright_streaks,
    "gauss_noise": _raises_high_pass_energy_on_smooth,
    "ISO_noise": _raises_high_pass_energy_on_smooth,
    "impulse_noise": _raises_high_pass_energy_on_smooth,
    "resampling_blur": _lowers_high_pass_energy_on_textured,
    "motion_blur": _lowers_high_pass_energy_on_textured,
    "zoom_blur": _lowers_high_pass_energy_on_textured,
    "color_jitter": _changes_colour_statistics,
    "compression": _adds_8x8_blocks,
    "elastic_transform": _moves_pixels_keeps_histogram,
    "frosted_glass_blur": _moves_pixels_keeps_histogram,
    "brightness": _lowers_mean,
    "contrast": _raises_std,
}


def test_every_robustseg_degradation_has_an_expected_effect() -> None:
    assert set(EXPECTED_EFFECT) == {d.name for d in ROBUSTSEG}


@pytest.mark.parametrize("d", ROBUSTSEG, ids=_ids(ROBUSTSEG))
def test_robustseg_changes_the_image_in_the_expected_direction(d: Degradation) -> None:
    EXPECTED_EFFECT[d.name](d)


def test_impulse_noise_is_a_1_4_to_1_5_multiplier() -> None:
    mid = torch.full((1, 3, H, W), 100, dtype=torch.uint8)
    out, _ = get_degradation("robustseg", "impulse_noise")(mid, [0])
    assert out.min() >= 140 and out.max() <= 150 and out.float().std() > 1


def test_compression_matches_pil_jpeg_at_a_quality_from_5_to_10() -> None:
    import io

    from PIL import Image

    out, _ = get_degradation("robustseg", "compression")(TEXTURED[:1], [7])
    matches = []
    for quality in range(5, 11):
        buffer = io.BytesIO()
        Image.fromarray(TEXTURED[0].permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=quality)
        decoded = torch.from_numpy(np.array(Image.open(buffer).convert("RGB"))).permute(2, 0, 1)
        matches.append(torch.equal(decoded, out[0]))
    assert sum(matches) == 1


def _square_scene() -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.zeros(1, 3, H, W, dtype=torch.uint8)
    image[..., 20:44, 28:52] = 255
    return image, image[0, :1].bool()


@pytest.mark.parametrize("suite", SUITES)
def test_elastic_warps_masks_with_the_image(suite: str) -> None:
    image, mask = _square_scene()
    empty = torch.zeros(0, H, W, dtype=torch.bool)
    d = get_degradation(suite, "elastic_transform")
    out, masks = d(
        image, [5], severity=5 if suite == "imagenet-c" else None, masks=[torch.cat([mask, ~mask])]
    )
    assert masks is not None
    warped = masks[0][0]
    assert not torch.equal(warped, mask[0]), "the mask did not move"
    white = out[0].float().mean(dim=0) > 127
    assert (white == warped).float().mean() > 0.99
    assert torch.equal(masks[0][1], ~warped)
    _, no_masks = d(image, [5], masks=[empty])
    assert no_masks is not None and no_masks[0].shape == (0, H, W)


# ---------------------------------------------------------------- imagenet-c


@pytest.mark.parametrize("d", IMAGENET_C, ids=_ids(IMAGENET_C))
def test_imagenet_c_severity_5_is_further_from_clean_than_severity_1(d: Degradation) -> None:
    mild, _ = d(TEXTURED, SEEDS, severity=1)
    harsh, _ = d(TEXTURED, SEEDS, severity=5)
    assert _mean_abs_diff(harsh, TEXTURED) > _mean_abs_diff(mild, TEXTURED)


def test_imagenet_c_restores_numpy_global_rng() -> None:
    np.random.seed(1234)
    expected = np.random.rand()
    np.random.seed(1234)
    get_degradation("imagenet-c", "gaussian_noise")(TEXTURED, SEEDS)
    assert np.random.rand() == expected


def test_imagenet_c_elastic_is_bit_identical_to_the_library() -> None:
    from imagecorruptions import corrupt

    image = TEXTURED[0].permute(1, 2, 0).numpy().copy()
    ours, _ = get_degradation("imagenet-c", "elastic_transform")(TEXTURED[:1], [99], severity=4)
    np.random.seed(99)
    theirs = corrupt(image, corruption_name="elastic_transform", severity=4)
    assert np.array_equal(ours[0].permute(1, 2, 0).numpy(), theirs)


# ---------------------------------------------------------------- GPU (skipped without one)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("d", ROBUSTSEG, ids=_ids(ROBUSTSEG))
def test_robustseg_runs_on_cuda(d: Degradation) -> None:
    images = TEXTURED.cuda()
    masks = [torch.ones(1, H, W, dtype=torch.bool, device="cuda")] * 2
    out, out_masks = d(images, SEEDS, masks=masks)
    again, _ = d(images, SEEDS, masks=masks)
    assert out.device == images.device and out.dtype == torch.uint8 and torch.equal(out, again)
    assert out_masks is not None and all(m.device == images.device for m in out_masks)
    single = torch.cat([d(images[i : i + 1], [seed])[0] for i, seed in enumerate(SEEDS)])
    assert torch.equal(out, single)
