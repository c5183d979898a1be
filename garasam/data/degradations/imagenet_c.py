"""The imagenet-c suite: the 19 common corruptions of `imagecorruptions-imaug`, severities 1-5.

The library works on one HWC uint8 numpy image and draws from NumPy's global RNG, so each image is
moved to the CPU and corrupted with the global state seeded from its seed (and restored afterwards).
Two corruptions ignore that state: `impulse_noise` (scikit-image's `random_noise`, a fresh
`default_rng()`) and `glass_blur` (a numba RNG seeded from fresh entropy); both take a `seed=` keyword,
which we pass, so every corruption is reproducible. `elastic_transform` moves pixels and the library
does not return its displacement field, so that one is recomputed here (same draws, same arithmetic;
tests check the image is bit-identical to the library's) and the field is applied to the masks too.
The library is imported on first use: it pulls in numba, scikit-image and OpenCV.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch

from garasam.data.degradations.core import ApplyFn, Degradation, Masks
from garasam.errors import DataError

NAMES: tuple[str, ...] = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
    "speckle_noise",
    "gaussian_blur",
    "spatter",
    "saturate",
)
# These draw from their own fresh RNG unless handed `seed=`.
_SEEDED_BY_KEYWORD = frozenset({"impulse_noise", "glass_blur"})
# Fixed filters: the output does not depend on the seed.
_SEED_INDEPENDENT = frozenset(
    {
        "defocus_blur",
        "zoom_blur",
        "brightness",
        "contrast",
        "pixelate",
        "jpeg_compression",
        "gaussian_blur",
        "saturate",
    }
)
_MIN_SIDE = 32  # the library refuses smaller images
# imagecorruptions' elastic_transform: displacement scale per severity.
_ELASTIC_ALPHA = tuple(250 * f for f in (0.05, 0.065, 0.085, 0.1, 0.12))


@contextlib.contextmanager
def _seeded_numpy(seed: int) -> Iterator[None]:
    """Seed NumPy's global RNG for one call and put the caller's state back afterwards."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


def _corrupt(image: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """One HWC uint8 image through the library, reproducibly."""
    from imagecorruptions import corrupt

    extra = {"seed": seed} if name in _SEEDED_BY_KEYWORD else {}
    with _seeded_numpy(seed):
        return corrupt(image, corruption_name=name, severity=severity, **extra)


def _elastic(
    image: np.ndarray, severity: int, seed: int, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
    """imagecorruptions' `elastic_transform`, keeping the field to warp `mask` ([N,H,W] bool) by nearest."""
    from scipy.ndimage import map_coordinates
    from skimage.filters import gaussian

    height, width = image.shape[:2]
    sigma = np.array((height, width)) * 0.01
    alpha = _ELASTIC_ALPHA[severity - 1]
    max_shift = height * 0.005
    with _seeded_numpy(seed):
        shifts = [
            (
                gaussian(
                    np.random.uniform(-max_shift, max_shift, size=(height, width)),
                    sigma,
                    mode="reflect",
                    truncate=3,
                )
                * alpha
            ).astype(np.float32)
            for _ in range(2)
        ]
    dx, dy = shifts
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    coords = (rows + dy, cols + dx)
    pixels = image.astype(np.float32) / 255.0
    warped = np.stack(
        [map_coordinates(pixels[..., c], coords, order=1, mode="reflect") for c in range(image.shape[2])],
        axis=-1,
    )
    out = np.uint8(np.clip(warped, 0, 1) * 255)
    if mask is None:
        return out, None
    moved = [map_coordinates(m.astype(np.float32), coords, order=0, mode="reflect") > 0.5 for m in mask]
    return out, np.stack(moved) if moved else mask.copy()


def _apply_for(name: str) -> ApplyFn:
    """The batch wrapper for one corruption: tensor -> per-image numpy HWC -> tensor on the input device."""

    def apply(
        images: torch.Tensor, seeds: list[int], severity: int, masks: Masks | None
    ) -> tuple[torch.Tensor, Masks | None]:
        height, width = images.shape[-2:]
        if min(height, width) < _MIN_SIDE:
            raise DataError(
                f"degradation imagenet-c/{name}: images must be at least {_MIN_SIDE} px a side, got {height}x{width}"
            )
        cpu = images.permute(0, 2, 3, 1).cpu().numpy()
        outputs = []
        warped_masks: Masks = []
        for i, seed in enumerate(seeds):
            image = np.ascontiguousarray(cpu[i])
            seed32 = seed % 2**32
            if name == "elastic_transform":
                mask = None if masks is None else masks[i].cpu().numpy()
                out, moved = _elastic(image, severity, seed32, mask)
                if masks is not None:
                    warped_masks.append(torch.from_numpy(moved).to(masks[i].device))
            else:
                out = _corrupt(image, name, severity, seed32)
            outputs.append(out)
        result = torch.from_numpy(np.stack(outputs)).permute(0, 3, 1, 2).contiguous().to(images.device)
        if name == "elastic_transform" and masks is not None:
            return result, warped_masks
        return result, masks

    return apply


SUITE: tuple[Degradation, ...] = tuple(
    Degradation(
        name=name,
        suite="imagenet-c",
        severities=(1, 2, 3, 4, 5),
        geometric=name == "elastic_transform",
        stochastic=name not in _SEED_INDEPENDENT,
        default_severity=3,
        apply=_apply_for(name),
    )
    for name in NAMES
)
