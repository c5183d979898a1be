"""The `Degradation` record and its input checks, shared by every suite."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from garasam.errors import DataError

Masks = list[torch.Tensor]
# (uint8 images [B,3,H,W], one seed per image, severity, masks or None) -> (uint8 images, masks or None)
ApplyFn = Callable[[torch.Tensor, list[int], int, Masks | None], tuple[torch.Tensor, Masks | None]]


@dataclass(frozen=True)
class Degradation:
    """One corruption of a suite, callable on a batch of uint8 RGB images.

    `stochastic` says whether the output depends on the seed (a blur with fixed strength does not);
    `geometric` whether pixels move, in which case masks are warped with the same field (nearest).
    """

    name: str
    suite: str
    severities: tuple[int, ...]
    geometric: bool
    stochastic: bool
    default_severity: int
    apply: ApplyFn = field(repr=False, compare=False)

    def __call__(
        self,
        images: torch.Tensor,
        seeds: Sequence[int],
        severity: int | None = None,
        masks: Masks | None = None,
    ) -> tuple[torch.Tensor, Masks | None]:
        """Degrade `images` (uint8 [B,3,H,W], any device); one seed per image makes each image reproducible.

        Masks (per image a bool [N,H,W]) come back warped for geometric degradations and unchanged otherwise.
        """
        level = self.default_severity if severity is None else severity
        if level not in self.severities:
            raise DataError(
                f"degradation {self.suite}/{self.name}: severity {level!r} is not one of {list(self.severities)}"
            )
        _check_batch(self, images, seeds, masks)
        if images.shape[0] == 0:
            return images.clone(), masks
        out, out_masks = self.apply(images, [int(s) for s in seeds], level, masks)
        return out, out_masks

    def apply_image(
        self, image: np.ndarray, seed: int, severity: int | None = None, masks: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """One H x W x 3 uint8 image (and its bool [N, H, W] masks) at its own resolution, on the CPU.

        The one way training, evaluation, `garasam corrupt` and the web page degrade an image, so the
        pixel-sized parameters (blur kernels, JPEG blocks, noise grain) mean the same in all of them.
        Masks come back warped for geometric degradations, unchanged (the same array) otherwise.
        """
        batch = torch.from_numpy(np.require(image, requirements="CW")).permute(2, 0, 1)[None]
        warp = masks is not None and self.geometric
        out, warped = self(
            batch, [seed], severity=severity, masks=[torch.from_numpy(masks)] if warp else None
        )
        degraded = np.ascontiguousarray(out[0].permute(1, 2, 0).numpy())
        return degraded, (warped[0].numpy() if warp and warped is not None else masks)


def _check_batch(d: Degradation, images: torch.Tensor, seeds: Sequence[int], masks: Masks | None) -> None:
    """Reject inputs that would otherwise fail deep inside an op with an unreadable message."""
    where = f"degradation {d.suite}/{d.name}"
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        dtype = images.dtype if isinstance(images, torch.Tensor) else None
        raise DataError(f"{where}: expected uint8 images [B,3,H,W], got {shape} {dtype}")
    if images.shape[1] != 3:
        raise DataError(f"{where}: expected 3 RGB channels, got shape {tuple(images.shape)}")
    if len(seeds) != images.shape[0]:
        raise DataError(f"{where}: got {len(seeds)} seeds for {images.shape[0]} images (one seed per image)")
    if masks is None:
        return
    if len(masks) != images.shape[0]:
        raise DataError(f"{where}: got {len(masks)} mask tensors for {images.shape[0]} images")
    height, width = images.shape[-2:]
    for i, mask in enumerate(masks):
        if mask.dtype != torch.bool or mask.ndim != 3 or tuple(mask.shape[-2:]) != (height, width):
            raise DataError(
                f"{where}: masks[{i}] must be bool [N,{height},{width}], got {tuple(mask.shape)} {mask.dtype}"
            )


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Round float pixels (0-255 scale) to the nearest uint8, saturating instead of wrapping."""
    return images.round().clamp_(0, 255).to(torch.uint8)
