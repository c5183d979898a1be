"""SAM's input and output geometry, shared by training, evaluation and prediction.

SAM sees an image resized so its longest side is `image_size` (PIL bilinear, antialiased, as
`segment_anything.utils.transforms.ResizeLongestSide`), normalised, and zero-padded bottom/right to a
square. SAM 2 (`square=True`) stretches the image to the square instead, as its `SAM2Transforms` do,
and resizes its mask logits straight back to the original size. Images stay uint8 until `preprocess`.
Prompts and masks are mapped into the same resized frame; `postprocess_masks` maps logits back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from garasam.data.prompts import Prompt
from garasam.data.readers import Sample

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


@dataclass
class SamBatch:
    """A training/eval batch in SAM's input frame; pass `images` through `preprocess(images, input_sizes)`."""

    images: torch.Tensor  # uint8 [B, 3, S, S], zero padded bottom/right
    input_sizes: list[tuple[int, int]]  # (h, w) of each resized image inside the padded square
    original_sizes: list[tuple[int, int]]  # (H, W) of each source image
    masks: list[torch.Tensor]  # bool [N_i, S, S] per image, resized and padded like the image
    prompts: list[list[Prompt]]  # per image, one prompt per mask, in input-frame coordinates
    meta: list[dict[str, Any]] = field(default_factory=list)


class SamTransform:
    """Resize-longest-side, normalise and pad for a SAM whose encoder takes `image_size` x `image_size`
    (`square`: stretch to the square, SAM 2's geometry; `garasam.models.features.input_geometry`)."""

    def __init__(self, image_size: int = 1024, square: bool = False) -> None:
        if image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.image_size = int(image_size)
        self.square = bool(square)

    @staticmethod
    def get_preprocess_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
        """(h, w) after scaling the longest side to `long_side`, rounded as SAM does."""
        scale = long_side * 1.0 / max(height, width)
        return int(height * scale + 0.5), int(width * scale + 0.5)

    def input_size(self, original_size: tuple[int, int]) -> tuple[int, int]:
        if self.square:
            return self.image_size, self.image_size
        return self.get_preprocess_shape(original_size[0], original_size[1], self.image_size)

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        """H x W x 3 uint8 -> h x w x 3 uint8 with the longest side = image_size (SAM's PIL bilinear
        resize), as `segment_anything`'s `ResizeLongestSide.apply_image` returns it."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an H x W x 3 uint8 image, got {image.shape} {image.dtype}")
        height, width = self.input_size(image.shape[:2])
        return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))

    def resize_image(self, image: np.ndarray) -> torch.Tensor:
        """`apply_image` as the uint8 [3, h, w] tensor the encoder batches are made of."""
        return torch.from_numpy(np.ascontiguousarray(self.apply_image(image).transpose(2, 0, 1)))

    def apply_coords(self, coords: ArrayT, original_size: tuple[int, int]) -> ArrayT:
        """(x, y) points [..., 2] in the original image -> the resized frame (float)."""
        old_h, old_w = original_size
        new_h, new_w = self.input_size(original_size)
        scale = (new_w / old_w, new_h / old_h)
        if isinstance(coords, torch.Tensor):
            return coords.to(torch.float32) * coords.new_tensor(scale, dtype=torch.float32)
        return np.asarray(coords, dtype=np.float64) * np.array(scale)

    def apply_boxes(self, boxes: ArrayT, original_size: tuple[int, int]) -> ArrayT:
        """XYXY boxes [..., 4] in the original image -> the resized frame."""
        shape = boxes.shape
        return self.apply_coords(boxes.reshape(-1, 2, 2), original_size).reshape(shape)

    def apply_coords_torch(self, coords: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        """`apply_coords` under `segment_anything`'s name for tensors."""
        return self.apply_coords(coords, original_size)

    def apply_boxes_torch(self, boxes: torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        """`apply_boxes` under `segment_anything`'s name for tensors."""
        return self.apply_boxes(boxes, original_size)

    def apply_prompt(self, prompt: Prompt, original_size: tuple[int, int]) -> Prompt:
        """A prompt in the original image -> the same prompt in the resized frame (float32)."""
        if prompt.box is not None:
            return replace(prompt, box=self.apply_boxes(prompt.box, original_size).astype(np.float32))
        return replace(prompt, points=self.apply_coords(prompt.points, original_size).astype(np.float32))

    def apply_masks(self, masks: np.ndarray | torch.Tensor, original_size: tuple[int, int]) -> torch.Tensor:
        """bool [N, H, W] -> bool [N, h, w] in the resized frame (nearest up, area-weighted majority down)."""
        masks = torch.as_tensor(masks)
        if masks.ndim != 3 or tuple(masks.shape[-2:]) != tuple(original_size):
            raise ValueError(
                f"expected masks [N, {original_size[0]}, {original_size[1]}], got {list(masks.shape)}"
            )
        height, width = self.input_size(original_size)
        if masks.shape[0] == 0:
            return torch.zeros((0, height, width), dtype=torch.bool)
        if height >= original_size[0]:  # upsampling: copy pixels, so shapes keep their exact corners
            resized = F.interpolate(masks[:, None].float(), size=(height, width), mode="nearest-exact")
        else:  # downsampling: each output pixel is on if at least half of its area is
            resized = F.interpolate(
                masks[:, None].float(),
                size=(height, width),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        return resized[:, 0] >= 0.5

    def preprocess(
        self,
        images: torch.Tensor | Sequence[torch.Tensor],
        input_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> torch.Tensor:
        """uint8 [B, 3, h, w] (or a list of [3, h_i, w_i]) -> normalised float32 [B, 3, S, S], zero padded.

        `input_sizes` marks the real image inside already padded inputs, so padding stays exactly zero
        after normalisation (as SAM pads after normalising).
        """
        if isinstance(images, torch.Tensor) and (images.ndim != 4 or images.shape[1] != 3):
            raise ValueError(f"expected images [B, 3, h, w], got {list(images.shape)}")
        if len(images) == 0:
            raise ValueError("preprocess needs at least one image")
        sizes = (
            list(input_sizes) if input_sizes is not None else [tuple(image.shape[-2:]) for image in images]
        )
        return torch.stack(
            [self._normalise_pad(image, size) for image, size in zip(images, sizes, strict=True)]
        )

    def _normalise_pad(self, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        height, width = size
        if height > self.image_size or width > self.image_size:
            raise ValueError(
                f"image {width}x{height} is larger than the SAM input {self.image_size}; use resize_image"
            )
        mean = torch.tensor(PIXEL_MEAN, device=image.device).view(3, 1, 1)
        std = torch.tensor(PIXEL_STD, device=image.device).view(3, 1, 1)
        normalised = (image[:, :height, :width].float() - mean) / std
        return F.pad(normalised, (0, self.image_size - width, 0, self.image_size - height))

    def postprocess_masks(
        self, low_res_logits: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int]
    ) -> torch.Tensor:
        """Logits [..., h', w'] -> logits [..., H, W]: upsample to S x S, crop the image, resize (SAM's recipe)."""
        leading = low_res_logits.shape[:-2]
        logits = low_res_logits.reshape(-1, 1, *low_res_logits.shape[-2:]).float()
        if self.square:  # SAM 2: the low-res logits cover the whole (stretched) image
            logits = F.interpolate(logits, tuple(original_size), mode="bilinear", align_corners=False)
            return logits.reshape(*leading, *logits.shape[-2:])
        logits = F.interpolate(
            logits, (self.image_size, self.image_size), mode="bilinear", align_corners=False
        )
        logits = logits[..., : input_size[0], : input_size[1]]
        logits = F.interpolate(logits, tuple(original_size), mode="bilinear", align_corners=False)
        return logits.reshape(*leading, *logits.shape[-2:])

    def collate(self, samples: Sequence[Sample], prompts: Sequence[Sequence[Prompt]]) -> SamBatch:
        """Samples (with one original-frame prompt per mask) -> a padded uint8 batch in the input frame."""
        if len(samples) != len(prompts) or not samples:
            raise ValueError(
                f"need one prompt list per sample, got {len(samples)} samples, {len(prompts)} lists"
            )
        size = self.image_size
        images = torch.zeros((len(samples), 3, size, size), dtype=torch.uint8)
        batch = SamBatch(images=images, input_sizes=[], original_sizes=[], masks=[], prompts=[])
        for index, (sample, sample_prompts) in enumerate(zip(samples, prompts, strict=True)):
            if len(sample_prompts) != len(sample.masks):
                raise ValueError(
                    f"sample {index}: {len(sample.masks)} masks but {len(sample_prompts)} prompts"
                )
            original = (int(sample.image.shape[0]), int(sample.image.shape[1]))
            image = self.resize_image(sample.image)
            height, width = image.shape[-2:]
            images[index, :, :height, :width] = image
            masks = torch.zeros((len(sample.masks), size, size), dtype=torch.bool)
            if sample.masks:
                masks[:, :height, :width] = self.apply_masks(np.stack(sample.masks), original)
            batch.input_sizes.append((height, width))
            batch.original_sizes.append(original)
            batch.masks.append(masks)
            batch.prompts.append([self.apply_prompt(prompt, original) for prompt in sample_prompts])
            batch.meta.append(sample.meta)
        return batch
