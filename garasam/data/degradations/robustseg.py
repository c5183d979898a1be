"""The robustseg suite: RobustSAM's 15 degradations (spec section 5), one fixed strength each, in torch.

Each op takes float32 images [B,3,H,W] on the 0-255 scale and one `ImageRng` per image, and draws
its per-image parameters uniformly from the ranges of the spec's recipe column. Ops whose parameters
change array shapes (kernel sizes, zoom steps, op order) run image by image; the rest are batched.
Decisions where the recipe is vague are listed in docs/degradations.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import kornia
import numpy as np
import torch
import torch.nn.functional as F

from garasam.data.degradations import weather
from garasam.data.degradations.core import ApplyFn, Degradation, Masks, to_uint8
from garasam.data.degradations.filters import gaussian_blur
from garasam.data.degradations.rng import ImageRng
from garasam.errors import DataError

PixelOp = Callable[[torch.Tensor, list[ImageRng]], torch.Tensor]
ImageOp = Callable[[torch.Tensor, ImageRng], torch.Tensor]


def _per_image(op: ImageOp) -> PixelOp:
    """Run an op written for one [1,3,H,W] image over a batch."""

    def batched(x: torch.Tensor, rngs: list[ImageRng]) -> torch.Tensor:
        return torch.cat([op(x[i : i + 1], rng) for i, rng in enumerate(rngs)])

    return batched


def _per_image_scalar(rngs: list[ImageRng], low: float, high: float, like: torch.Tensor) -> torch.Tensor:
    """One U[low, high) factor per image, shaped [B,1,1,1] to broadcast over pixels."""
    values = [rng.uniform(low, high) for rng in rngs]
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, 1, 1, 1)


def _dense(rngs: list[ImageRng], draw: Callable[[ImageRng], torch.Tensor]) -> torch.Tensor:
    """Stack one dense draw per image, each from that image's own generator."""
    return torch.stack([draw(rng) for rng in rngs])


def _gauss_noise(x: torch.Tensor, rngs: list[ImageRng]) -> torch.Tensor:
    """Additive Gaussian noise, variance U(250, 260) on the 0-255 scale, independent per channel."""
    std = _per_image_scalar(rngs, 250.0, 260.0, x).sqrt()
    return x + std * _dense(rngs, lambda rng: rng.randn(*x.shape[1:]))


def _iso_noise(x: torch.Tensor, rngs: list[ImageRng]) -> torch.Tensor:
    """albumentations 1.x `ISONoise(color_shift=(0.4, 0.5), intensity=(0.7, 0.8))`.

    In HLS: hue gets N(0, color_shift * 360deg * intensity), lightness gets Poisson(std(L) * intensity
    * 255) / 255 scaled by (1 - L), which brightens dark pixels most.
    """
    color_shift = _per_image_scalar(rngs, 0.4, 0.5, x)
    intensity = _per_image_scalar(rngs, 0.7, 0.8, x)
    height, width = x.shape[-2:]
    hls = kornia.color.rgb_to_hls(x / 255.0)
    hue, light, sat = hls[:, 0:1], hls[:, 1:2], hls[:, 2:3]
    rates = light.std(dim=(-2, -1), correction=0, keepdim=True) * intensity * 255.0
    rates = rates.expand(-1, -1, height, width)
    luminance_noise = torch.stack([rng.poisson(rates[i]) for i, rng in enumerate(rngs)])
    color_noise = _dense(rngs, lambda rng: rng.randn(1, height, width)) * (
        color_shift * intensity * 2 * math.pi
    )
    hue = torch.remainder(hue + color_noise, 2 * math.pi)
    light = (light + luminance_noise / 255.0 * (1.0 - light)).clamp(0.0, 1.0)
    return kornia.color.hls_to_rgb(torch.cat([hue, light, sat], dim=1)) * 255.0


def _impulse_noise(x: torch.Tensor, rngs: list[ImageRng]) -> torch.Tensor:
    """Multiplicative noise (despite the name): each pixel times U(1.4, 1.5), shared by its channels."""
    return x * (1.4 + 0.1 * _dense(rngs, lambda rng: rng.rand(1, *x.shape[-2:])))


def _resampling_blur(x: torch.Tensor, rngs: list[ImageRng]) -> torch.Tensor:
    """Resize down x4 (area average) and back up (bilinear): detail below 4 px is lost."""
    height, width = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, height // 4), max(1, width // 4)), mode="area")
    return F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)


_MOTION_MAX_KERNEL = 35


def _motion_blur(x: torch.Tensor, rngs: list[ImageRng]) -> torch.Tensor:
    """albumentations 1.x `MotionBlur(blur_limit=35)`: a uniform line kernel, odd size 3..35, any angle.

    The line runs through the kernel centre (albumentations' `allow_shifted=False`), so the blur does not
    also translate the image away from its masks. Kernels are zero-padded to 35 x 35 so that every image
    sees the same FFT size whatever the batch.
    """
    kernels = []
    for rng in rngs:
        size = 2 * rng.randint(1, _MOTION_MAX_KERNEL // 2) + 1
        angle = torch.tensor([rng.uniform(0.0, 180.0)], device=x.device)
        kernel = kornia.filters.get_motion_kernel2d(size, angle, torch.zeros(1, device=x.device))
        pad = (_MOTION_MAX_KERNEL - size) // 2
        kernels.append(F.pad(kernel, (pad, pad, pad, pad)))
    return kornia.filters.fft_conv(x, torch.cat(kernels), border_type="replicate")


_ZOOM_MAX_FACTOR = 1.33


def _zoom_blur_one(x: torch.Tensor, rng: ImageRng) -> torch.Tensor:
    """albumentations 1.x `ZoomBlur(max_factor=1.33, step_factor=(0.05, 0.07))`, max factor fixed.

    The mean of the image and its central zooms by 1, 1 + step, ... < 1.33, each cropped back to the
    image size: a radial blur that grows away from the centre. The library would draw the max factor
    from U(1, 1.33), which leaves about one image in six unblurred (no factor past 1 + step); the
    recipe states one max factor, so it is fixed.
    """
    factors = np.arange(1.0, _ZOOM_MAX_FACTOR, rng.uniform(0.05, 0.07))
    height, width = x.shape[-2:]
    # Pixel centres in grid_sample's normalised coordinates (align_corners=False); zooming by f about the
    # centre samples them at 1/f. Built by broadcasting: affine_grid's batched matmul is ~10x slower on CPU.
    cols = (torch.arange(width, device=x.device, dtype=x.dtype) * 2 + 1) / width - 1
    rows = (torch.arange(height, device=x.device, dtype=x.dtype) * 2 + 1) / height - 1
    total = x.clone()
    for factor in factors:
        grid = torch.stack(torch.broadcast_tensors(cols[None, :] / factor, rows[:, None] / factor), dim=-1)
        total += F.grid_sample(x, grid[None], mode="bilinear", padding_mode="border", align_corners=False)
    return total / (len(factors) + 1)


def _color_jitter_one(x: torch.Tensor, rng: ImageRng) -> torch.Tensor:
    """albumentations 1.x `ColorJitter(brightness=0.7, contrast=0.3, saturation=0.7, hue=0.7)`, random order.

    Factors: brightness U(0.3, 1.7) (multiplicative), contrast U(0.7, 1.3) and saturation U(0.3, 1.7)
    (blends with the grey mean / grey image), hue shift U(-0.5, 0.5) turns: the recipe's 0.7 exceeds
    the library bound of 0.5, and half a turn either way already covers every hue.
    """
    brightness = rng.uniform(0.3, 1.7)
    contrast = rng.uniform(0.7, 1.3)
    saturation = rng.uniform(0.3, 1.7)
    hue = rng.uniform(-0.5, 0.5) * 2 * math.pi
    steps = (
        lambda img: (img * brightness).clamp(0.0, 1.0),
        lambda img: kornia.enhance.adjust_contrast_with_mean_subtraction(img, contrast),
        lambda img: kornia.enhance.adjust_saturation_with_gray_subtraction(img, saturation),
        lambda img: kornia.enhance.adjust_hue(img, hue),
    )
    img = x / 255.0
    for index in rng.permutation(len(steps)):
        img = steps[index](img)
    return img * 255.0


def _frosted_glass_blur(x: torch.Tensor, rngs: list[ImageRng]) -> torch.Tensor:
    """Each pixel takes the value of a random neighbour within +-3 px (clamped at the border)."""
    batch, channels, height, width = x.shape
    offsets = _dense(rngs, lambda rng: rng.dense_randint(-3, 3, 2, height, width))
    rows = (torch.arange(height, device=x.device)[:, None] + offsets[:, 0]).clamp_(0, height - 1)
    cols = (torch.arange(width, device=x.device)[None, :] + offsets[:, 1]).clamp_(0, width - 1)
    index = (rows * width + cols).view(batch, 1, -1).expand(-1, channels, -1)
    return torch.gather(x.reshape(batch, channels, -1), 2, index).view_as(x)


def _brightness(x: torch.Tensor, rngs: list[ImageRng]) -> torch.Tensor:
    """Low light: x * U(0.6, 0.8)."""
    return x * _per_image_scalar(rngs, 0.6, 0.8, x)


def _contrast(x: torch.Tensor, rngs: list[ImageRng]) -> torch.Tensor:
    """More contrast around mid-grey: (x - 128) * U(1.6, 1.7) + 128."""
    return (x - 128.0) * _per_image_scalar(rngs, 1.6, 1.7, x) + 128.0


def _pixel_apply(op: PixelOp) -> ApplyFn:
    """Wrap a float op into the uint8-in, uint8-out contract; masks pass through untouched."""

    def apply(
        images: torch.Tensor, seeds: list[int], severity: int, masks: Masks | None
    ) -> tuple[torch.Tensor, Masks | None]:
        rngs = [ImageRng(seed, images.device) for seed in seeds]
        return to_uint8(op(images.float(), rngs)), masks

    return apply


def _jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode and decode one CPU uint8 [3,H,W] RGB image with libjpeg (OpenCV, 4:2:0 chroma subsampling).

    OpenCV wants BGR; its output is bit-identical to PIL's at the same quality and ~3x faster.
    """
    bgr = np.ascontiguousarray(image.permute(1, 2, 0).numpy()[..., ::-1])
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise DataError(f"degradation robustseg/compression: JPEG cannot encode a {tuple(image.shape)} image")
    decoded = cv2.imdecode(encoded, cv2.IMREAD_COLOR)
    return torch.from_numpy(np.ascontiguousarray(decoded[..., ::-1])).permute(2, 0, 1)


def _compression(
    images: torch.Tensor, seeds: list[int], severity: int, masks: Masks | None
) -> tuple[torch.Tensor, Masks | None]:
    """Real JPEG at quality randint(5, 10), through libjpeg on the CPU.

    kornia's differentiable codec was measured against libjpeg at these qualities: its soft rounding
    leaves ~8% less error than real JPEG (mean abs error 11.2 vs 12.2 at quality 5), so the benchmark
    would be milder than RobustSAM's. Moving a batch to the CPU and back costs little next to the codec.
    """
    cpu = images.cpu()
    decoded = [_jpeg(cpu[i], ImageRng(seed, images.device).randint(5, 10)) for i, seed in enumerate(seeds)]
    return torch.stack(decoded).to(images.device), masks


_ELASTIC_ALPHA = 100.0
_ELASTIC_SIGMA = 10.0


def _elastic_transform(
    images: torch.Tensor, seeds: list[int], severity: int, masks: Masks | None
) -> tuple[torch.Tensor, Masks | None]:
    """albumentations 1.x `ElasticTransform(alpha=100, sigma=10)`, masks warped by the same field.

    The displacement (in px) is U(-1, 1) noise smoothed by a Gaussian of sigma 10 times alpha; images are sampled bilinearly, masks by nearest neighbour, both mirrored at the
    border. RobustSAM left the masks unwarped; we warp them so the labels follow the pixels.
    """
    batch, _, height, width = images.shape
    device = images.device
    rngs = [ImageRng(seed, device) for seed in seeds]
    noise = _dense(rngs, lambda rng: rng.rand(2, height, width)) * 2.0 - 1.0
    shift = gaussian_blur(noise, _ELASTIC_SIGMA) * _ELASTIC_ALPHA
    rows = torch.arange(height, device=device, dtype=torch.float32)[:, None]
    cols = torch.arange(width, device=device, dtype=torch.float32)[None, :]
    # grid_sample's normalised coordinates with align_corners=True: -1 and 1 are the outer pixel centres.
    grid_x = (cols + shift[:, 0]) * (2.0 / max(width - 1, 1)) - 1.0
    grid_y = (rows + shift[:, 1]) * (2.0 / max(height - 1, 1)) - 1.0
    grid = torch.stack([grid_x, grid_y], dim=-1)
    warped = F.grid_sample(
        images.float(), grid, mode="bilinear", padding_mode="reflection", align_corners=True
    )
    if masks is None:
        return to_uint8(warped), None
    warped_masks = []
    for i, mask in enumerate(masks):
        if mask.shape[0] == 0:
            warped_masks.append(mask.clone())
            continue
        moved = F.grid_sample(
            mask.to(device=device, dtype=torch.float32)[None],
            grid[i : i + 1],
            mode="nearest",
            padding_mode="reflection",
            align_corners=True,
        )
        warped_masks.append((moved[0] > 0.5).to(mask.device))
    return to_uint8(warped), warped_masks


# (name, apply, geometric, stochastic), in the order of the spec's table.
_TABLE: tuple[tuple[str, ApplyFn, bool, bool], ...] = (
    ("snow", _pixel_apply(_per_image(weather.snow)), False, True),
    ("fog", _pixel_apply(_per_image(weather.fog)), False, True),
    ("rain", _pixel_apply(_per_image(weather.rain)), False, True),
    ("gauss_noise", _pixel_apply(_gauss_noise), False, True),
    ("ISO_noise", _pixel_apply(_iso_noise), False, True),
    ("impulse_noise", _pixel_apply(_impulse_noise), False, True),
    ("resampling_blur", _pixel_apply(_resampling_blur), False, False),
    ("motion_blur", _pixel_apply(_motion_blur), False, True),
    ("zoom_blur", _pixel_apply(_per_image(_zoom_blur_one)), False, True),
    ("color_jitter", _pixel_apply(_per_image(_color_jitter_one)), False, True),
    ("compression", _compression, False, True),
    ("elastic_transform", _elastic_transform, True, True),
    ("frosted_glass_blur", _pixel_apply(_frosted_glass_blur), False, True),
    ("brightness", _pixel_apply(_brightness), False, True),
    ("contrast", _pixel_apply(_contrast), False, True),
)

SUITE: tuple[Degradation, ...] = tuple(
    Degradation(
        name=name,
        suite="robustseg",
        severities=(1,),
        geometric=geometric,
        stochastic=stochastic,
        default_severity=1,
        apply=apply,
    )
    for name, apply, geometric, stochastic in _TABLE
)
