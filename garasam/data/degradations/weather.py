"""Snow, rain and fog for the robustseg suite, re-implemented in torch from imgaug and albumentations 1.x.

RobustSAM built these from imgaug (`Snowflakes`, `Rain`, `Fog`) and albumentations 1.x (`RandomFog`).
imgaug does not import under NumPy 2 and albumentations 2.x changed both the arguments and the looks,
so each layer is rebuilt here step by step; the comments name the library step it follows. Every image
is processed on its own ([1,3,H,W] float, 0-255) with its own `ImageRng`.
"""

from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F

from garasam.data.degradations.filters import gaussian_blur
from garasam.data.degradations.rng import ImageRng


def _resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic resize (imgaug's `imresize_single_image(..., "cubic")`, i.e. cv2.INTER_CUBIC)."""
    if tuple(x.shape[-2:]) == (height, width):
        return x
    return F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False)


def _motion_streaks(layer: torch.Tensor, length: int, angle: float) -> torch.Tensor:
    """Smear a [1,1,H,W] layer along `angle` (degrees from vertical) with a one-sided line kernel.

    imgaug's `MotionBlur(k, angle, direction=1.0)`: a line of linearly falling weights, 0 degrees pointing
    up. kornia's kernel is horizontal at 0 degrees, hence the +90. Streaks reach ~10% of the image, so the
    convolution goes through the FFT, whose cost does not grow with the kernel.
    """
    if length <= 1:
        return layer
    size = max(length, 3) | 1
    kernel = kornia.filters.get_motion_kernel2d(
        size,
        torch.tensor([angle + 90.0], device=layer.device),
        torch.tensor([1.0], device=layer.device),
    )
    return kornia.filters.fft_conv(layer, kernel, border_type="replicate")


def _particle_layer(
    rng: ImageRng,
    height: int,
    width: int,
    *,
    density: float,
    density_uniformity: float,
    particle_size: float,
    angle: float,
    speed: float,
    blur_sigma: float | None,
) -> torch.Tensor:
    """imgaug `SnowflakesLayer.draw_on_image` up to the blend: a [1,1,H,W] layer of streaks, 0-255.

    Salt noise is drawn at a resolution set by `particle_size` (bigger -> finer), gated by 8x8 Beta noise
    so some regions get fewer particles, upscaled, optionally blurred, then smeared by the fall speed.
    """
    scale = min(max(1.0 - particle_size, 0.001), 1.0)
    small_h, small_w = max(1, int(height * scale)), max(1, int(width * scale))
    # imgaug `Salt(p=density)`: a particle gets 255 * (0.5 + |Beta(0.5, 0.5) - 0.5|); Beta(0.5, 0.5) is the
    # arcsine law, sin^2(pi U / 2).
    arcsine = torch.sin(rng.rand(1, 1, small_h, small_w) * (math.pi / 2)) ** 2
    salt = torch.where(
        rng.rand(1, 1, small_h, small_w) < density, (255 * (0.5 + (arcsine - 0.5).abs())).floor(), 0.0
    )
    # Gate by Beta(1, 1 - uniformity) noise (inverse CDF 1 - (1 - U)^(1/b)), drawn on an 8x8 grid.
    b = max(1.0 - density_uniformity, 1e-3)
    gate = 1.0 - (1.0 - rng.rand(1, 1, 8, 8)) ** (1.0 / b)
    gate = _resize(gate, small_h, small_w).clamp(0.0, 1.0)
    layer = (salt * gate).floor()
    layer = _resize(layer, height, width).clamp(0.0, 255.0)
    if blur_sigma is not None:
        layer = gaussian_blur(layer, blur_sigma, truncate=3.0)
    return _motion_streaks(layer, int(speed * max(height, width)), angle)


def snow(x: torch.Tensor, rng: ImageRng) -> torch.Tensor:
    """imgaug `Snowflakes(density=0.35, flake_size=(0.6, 0.8))`: 1 to 3 layers of falling flakes.

    RobustSAM ran albumentations 1.x `RandomSnow(brightness_coeff=1.0, ...)` first; that step multiplies
    the HLS lightness of the pixels below the snow point by 1.0, i.e. leaves the image unchanged, so it is
    not run here. The other parameters are imgaug's defaults.
    """
    height, width = x.shape[-2:]
    for _ in range(rng.randint(1, 3)):
        flake_size_uniformity = rng.uniform(0.4, 0.8)
        speed = rng.uniform(0.007, 0.03)
        sigma = min(max(max(height, width) * rng.uniform(0.0001, 0.001), 0.5), 3.75)
        flakes = _particle_layer(
            rng,
            height,
            width,
            density=0.35,
            density_uniformity=rng.uniform(0.3, 0.9),
            particle_size=rng.uniform(0.6, 0.8),
            angle=rng.uniform(-30.0, 30.0),
            speed=speed,
            blur_sigma=sigma,
        )
        # `_postprocess_noise`: a gamma makes flake sizes less uniform, a gain makes them visible again.
        gain = 1.0 + 2.0 * (1.0 - flake_size_uniformity)
        gain_adj = 1.0 + 5.0 * (1.0 - flake_size_uniformity)
        flakes = 255.0 * (flakes / 255.0).clamp(0.0, 1.0) ** gain * gain_adj
        # `_blend`: a sum for faint glow, a max for the flakes themselves.
        x = (x + (0.1 + 20.0 * speed) * flakes).clamp(0.0, 255.0)
        x = torch.maximum(x, (1.0 + 20.0 * speed) * flakes).clamp(0.0, 255.0)
    return x


def rain(x: torch.Tensor, rng: ImageRng) -> torch.Tensor:
    """imgaug `Rain(drop_size=(0.40, 0.50), speed=(0.05, 0.1))`: 1 to 3 layers of streaks.

    `RainLayer` skips the Gaussian blur and blends each layer towards a drop colour with alpha
    1.3 * layer / 255. imgaug picks the colour as 110 + 130 % sum(layer[:1000]), which is 240 unless that
    sum is below 130, so 240 is used.
    """
    height, width = x.shape[-2:]
    for _ in range(rng.randint(1, 3)):
        streaks = _particle_layer(
            rng,
            height,
            width,
            density=rng.uniform(0.03, 0.14),
            density_uniformity=rng.uniform(0.8, 1.0),
            particle_size=rng.uniform(0.40, 0.50),
            angle=rng.uniform(-15.0, 15.0),
            speed=rng.uniform(0.05, 0.1),
            blur_sigma=None,
        )
        alpha = (1.3 * streaks / 255.0).clamp(0.0, 1.0)
        x = ((1.0 - alpha) * x + alpha * 240.0).clamp(0.0, 255.0)
    return x


def _frequency_noise(
    rng: ImageRng, height: int, width: int, exponent: float, size_px_max: int
) -> torch.Tensor:
    """imgaug `FrequencyNoise`: a [1,1,H,W] map in [0, 1] whose spectrum falls off as f**exponent.

    Drawn at a resolution whose longer side is `size_px_max` (at least 4 px), then upscaled bicubically
    through 8 bits as imgaug does; more negative exponents give smoother, larger blobs.
    """
    longest = max(height, width)
    small_h, small_w = height, width
    if longest > size_px_max:
        small_h, small_w = int(height * size_px_max / longest), int(width * size_px_max / longest)
    small_h, small_w = max(small_h, 4), max(small_w, 4)
    magnitude = rng.rand(small_h, small_w)
    phase = rng.rand(small_h, small_w) * (2 * math.pi)
    fy = torch.arange(small_h, device=rng.device, dtype=torch.float32)
    fx = torch.arange(small_w, device=rng.device, dtype=torch.float32)
    fy = torch.minimum(fy, small_h - fy)[:, None]
    fx = torch.minimum(fx, small_w - fx)[None, :]
    freq = torch.sqrt(fy**2 + fx**2)
    freq[0, 0] = 1.0
    scale = freq**exponent
    scale[0, 0] = 0.0
    spectrum = torch.polar(magnitude * scale, phase)
    field = torch.fft.ifft2(spectrum).real
    field = (field - field.min()) / (field.max() - field.min()).clamp_min(1e-12)
    field = field[None, None]
    if (small_h, small_w) != (height, width):
        field = _resize((field * 255.0).floor(), height, width).clamp(0.0, 255.0) / 255.0
    return field


def _cloud_layer(x: torch.Tensor, rng: ImageRng) -> torch.Tensor:
    """imgaug `Fog()` (a `CloudLayer`): blend towards a bright, slowly varying intensity, dense everywhere."""
    height, width = x.shape[-2:]
    intensity_mean = rng.uniform(220.0, 255.0)
    alpha_min = rng.uniform(0.7, 0.9)
    density_multiplier = rng.uniform(0.4, 0.9)
    coarse = _resize(intensity_mean + 2.0 * rng.randn(1, 1, 8, 8), height, width)
    fine = _frequency_noise(rng, height, width, rng.uniform(-2.0, -1.5), max(height, width))
    intensity = (coarse + intensity_mean * (2.0 * fine - 1.0) / 5.0).clamp(0.0, 255.0)
    alpha_local = _frequency_noise(rng, height, width, rng.uniform(-4.0, -2.0), rng.randint(2, 8))
    alpha = ((alpha_min + 0.3 * alpha_local) ** 0.9 * density_multiplier).clamp(0.0, 1.0)
    return (1.0 - alpha) * x + alpha * intensity


def _haze(x: torch.Tensor, rng: ImageRng) -> torch.Tensor:
    """albumentations 1.x `RandomFog(fog_coef_lower=0.1, fog_coef_upper=0.2, alpha_coef=0.08)`.

    White discs are alpha-blended one after the other, in rings that widen from the centre; blending k
    discs of alpha a over a pixel gives 255 - (255 - x) * (1 - a)**k, so only the per-pixel disc count is
    needed. A box blur of hw // 10 follows.
    """
    height, width = x.shape[-2:]
    fog_coef = rng.uniform(0.1, 0.2)
    hw = max(int(width // 3 * fog_coef), 10)
    radius = hw // 2
    yy = torch.arange(-radius, radius + 1, device=x.device)
    disc = ((yy[:, None] ** 2 + yy[None, :] ** 2) <= radius**2).to(x.dtype)
    # Disc counts on a map padded by 2r, so discs centred up to r outside the image still fit.
    count = torch.zeros(height + 4 * radius, width + 4 * radius, device=x.device, dtype=x.dtype)
    mid_x, mid_y, ring = width // 2 - 2 * hw, height // 2 - hw, 1
    step_x = max(1, 3 * hw * width // (height + width))
    step_y = max(1, 3 * hw * height // (height + width))
    while mid_x > -hw or mid_y > -hw:
        n = hw // 10 * ring
        xs = rng.randints(mid_x, width - mid_x - hw, n) + hw // 2
        ys = rng.randints(mid_y, height - mid_y - hw, n) + hw // 2
        for cx, cy in zip(xs.tolist(), ys.tolist(), strict=True):
            # The disc centred at image row cy covers rows cy-r..cy+r, i.e. cy+r..cy+3r of the padded map.
            if -radius <= cx < width + radius and -radius <= cy < height + radius:
                count[cy + radius : cy + 3 * radius + 1, cx + radius : cx + 3 * radius + 1] += disc
        mid_x, mid_y, ring = mid_x - step_x, mid_y - step_y, ring + 1
    count = count[2 * radius : 2 * radius + height, 2 * radius : 2 * radius + width]
    x = 255.0 - (255.0 - x) * (1.0 - 0.08 * fog_coef) ** count
    box = hw // 10
    if box > 1:
        x = kornia.filters.box_blur(x, (box, box), border_type="replicate")
    return x


def fog(x: torch.Tensor, rng: ImageRng) -> torch.Tensor:
    """RobustSAM's fog: imgaug `Fog()` then albumentations 1.x `RandomFog(0.1-0.2, alpha 0.08)`."""
    return _haze(_cloud_layer(x, rng), rng)
