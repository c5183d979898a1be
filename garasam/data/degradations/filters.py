"""Filters shared by the torch degradations."""

from __future__ import annotations

import math

import kornia
import torch


def gaussian_blur(x: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Gaussian blur of [B,C,H,W] with a (2 * ceil(truncate * sigma) + 1)-tap kernel, edges replicated.

    Goes through the FFT (kornia's `fft_conv`): its cost does not grow with the kernel, and kornia's
    direct `gaussian_blur2d` is several times slower on the CPU for the 25-81 tap kernels used here.
    Replicated edges keep it defined for images smaller than the kernel.
    """
    taps = kornia.filters.get_gaussian_kernel1d(2 * math.ceil(truncate * sigma) + 1, sigma, device=x.device)
    kernel = taps.view(1, -1, 1) * taps.view(1, 1, -1)
    return kornia.filters.fft_conv(x, kernel.to(x.dtype), border_type="replicate")
