"""`GaraSamPredictor`: the `segment_anything.SamPredictor` API on a transformers `SamModel`.

Encode an image once with `set_image`, then ask for masks as often as you like with `predict`
(one prompt, numpy, original-image pixels) or `predict_torch` (many prompts at once, torch, already
in the resized input frame). Conventions are the official ones: points (x, y) in pixels with
labels 1 = foreground, 0 = background, -1 = padding; boxes XYXY; masks thresholded at 0.

The model may carry GaRA / LoRA / MoE-LoRA adapters; after `set_image`, `gate_summary()` reports
how many rank components the gates switched on in each encoder block for that image.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from transformers import SamModel

from garasam import arrays
from garasam.adapters import GateSummary
from garasam.assembly import ModelSpec, build_model, encode
from garasam.data.transforms import SamTransform
from garasam.errors import ConfigError, DataError
from garasam.models.features import ImageFeatures, decode, input_geometry

_BLOCK = re.compile(r"\.(?:layers|blocks)\.(\d+)\.")


class GaraSamPredictor:
    """Repeated, cheap mask prediction on one image: the encoder runs once per `set_image`."""

    def __init__(self, model: SamModel) -> None:
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(
                f"expected a SAM model (build_sam, from_pretrained), got {type(model).__name__}"
            )
        self.model = model.eval()
        self.transform = SamTransform(*input_geometry(model))
        self.mask_threshold = 0.0
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def reset_image(self) -> None:
        """Forget the current image (its embedding and gate statistics)."""
        self.is_image_set = False
        self.features: ImageFeatures | None = None
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None
        self._gates: list[GateSummary] | None = None

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Encode an H x W x 3 uint8 image (RGB, or BGR as OpenCV reads it) for later `predict` calls."""
        image = arrays.rgb_image(image, image_format)
        resized = self.transform.resize_image(image).to(self.device)
        self.set_torch_image(resized[None], (int(image.shape[0]), int(image.shape[1])))

    @torch.inference_mode()
    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]) -> None:
        """Encode an image already resized so its longest side is the model's input size ([1, 3, h, w], 0-255)."""
        size = self.transform.image_size
        if (
            transformed_image.ndim != 4
            or transformed_image.shape[:2] != (1, 3)
            or (max(transformed_image.shape[-2:]) != size)
        ):
            raise DataError(
                f"set_torch_image expects [1, 3, h, w] with long side {size}, got {list(transformed_image.shape)}"
            )
        if not torch.isfinite(transformed_image).all():
            raise DataError("set_torch_image: the image holds non-finite values (NaN or inf)")
        if len(original_image_size) != 2 or min(original_image_size) < 1:
            raise DataError(f"original_image_size must be (H, W) in pixels, got {tuple(original_image_size)}")
        self.reset_image()
        self.original_size = (int(original_image_size[0]), int(original_image_size[1]))
        self.input_size = (int(transformed_image.shape[-2]), int(transformed_image.shape[-1]))
        pixel_values = self.transform.preprocess(transformed_image.to(self.device)).to(self.dtype)
        with torch.no_grad():
            self.features, gates = encode(self.model, pixel_values, [self.input_size])
        self._gates = gates.summary() or None
        self.is_image_set = True

    def get_image_embedding(self) -> torch.Tensor:
        """The current image's embedding, [1, C, h, w] (C = 256, h = w = 64 for the official models)."""
        self._require_image()
        return self.features.embeddings

    def gate_summary(self) -> list[GateSummary] | None:
        """GaRA / MoE gate decisions for the current image, one entry per adapter; None without gates."""
        self._require_image()
        return self._gates

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for one prompt given in original-image pixels.

        Returns masks [C, H, W] (bool, or float logits with `return_logits`), scores [C] and
        low-resolution logits [C, h, w] that can be fed back as `mask_input` ([1, h, w]).
        C is 3 with `multimask_output`, else 1.
        """
        self._require_image()
        coords = labels = boxes = masks = None
        if point_coords is not None:
            points, point_labels = arrays.points(point_coords, point_labels)
            points = self.transform.apply_coords(points, self.original_size)
            coords = torch.as_tensor(points, dtype=torch.float32, device=self.device)[None]
            labels = torch.as_tensor(point_labels, dtype=torch.int64, device=self.device)[None]
        if box is not None:
            box = self.transform.apply_boxes(arrays.box(box).reshape(1, 4), self.original_size)
            boxes = torch.as_tensor(box, dtype=torch.float32, device=self.device)
        if mask_input is not None:
            mask = arrays.mask_input(mask_input, self.mask_input_size)
            masks = torch.as_tensor(mask, dtype=torch.float32, device=self.device)[None]
        arrays.flags(multimask_output=multimask_output, return_logits=return_logits)
        out_masks, scores, low_res = self.predict_torch(
            coords, labels, boxes, masks, multimask_output, return_logits=return_logits
        )
        return out_masks[0].cpu().numpy(), scores[0].float().cpu().numpy(), low_res[0].float().cpu().numpy()

    @torch.inference_mode()
    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masks for B prompts at once; coordinates are already in the resized frame (`transform.apply_*`).

        point_coords [B, N, 2] with point_labels [B, N], boxes [B, 4], mask_input [B, 1, h, w].
        Returns masks [B, C, H, W], scores [B, C] and low-resolution logits [B, C, h, w].
        """
        self._require_image()
        if (point_coords is None) != (point_labels is None):
            raise DataError("point_coords and point_labels go together")
        h, w = self.mask_input_size
        for name, value, shape in (
            ("point_coords", point_coords, (None, None, 2)),
            ("point_labels", point_labels, (None, None)),
            ("boxes", boxes, (None, 4)),
            ("mask_input", mask_input, (None, 1, h, w)),
        ):
            _check_tensor(name, value, shape)
        if point_labels is not None:
            if point_labels.shape != point_coords.shape[:2]:
                raise DataError(
                    f"point_labels {list(point_labels.shape)} do not match point_coords {list(point_coords.shape)}"
                )
            arrays.points(point_coords.reshape(-1, 2).cpu().numpy(), point_labels.reshape(-1).cpu().numpy())
        arrays.flags(multimask_output=multimask_output, return_logits=return_logits)
        sizes = {len(t) for t in (point_coords, boxes, mask_input) if t is not None}
        if len(sizes) > 1:
            raise DataError(
                f"points, boxes and mask inputs disagree on the number of prompts: {sorted(sizes)}"
            )
        batch = sizes.pop() if sizes else 1
        out = decode(
            self.model,
            self.features.expand(batch),
            input_points=None if point_coords is None else point_coords[:, None].to(self.device, self.dtype),
            input_labels=None if point_labels is None else point_labels[:, None].to(self.device, torch.int64),
            input_boxes=None if boxes is None else boxes[:, None].to(self.device, self.dtype),
            input_masks=None if mask_input is None else mask_input.to(self.device, self.dtype),
            multimask_output=multimask_output,
        )
        low_res = out.pred_masks[:, 0]
        masks = self.transform.postprocess_masks(low_res, self.input_size, self.original_size)
        if not return_logits:
            masks = masks > self.mask_threshold
        return masks, out.iou_scores[:, 0], low_res

    @property
    def mask_input_size(self) -> tuple[int, int]:
        """(h, w) of a `mask_input`: the low-resolution logits `predict` returns, 4 x the embedding grid."""
        self._require_image()
        h, w = self.features.embeddings.shape[-2:]
        return 4 * int(h), 4 * int(w)

    def _require_image(self) -> None:
        if not self.is_image_set:
            raise RuntimeError("set an image with .set_image(...) before asking for masks or embeddings")


def _check_tensor(name: str, value: torch.Tensor | None, shape: tuple[int | None, ...]) -> None:
    """`value` is None, or a tensor of `shape` (None: any size) with finite values."""
    if value is None:
        return
    wanted = (
        "[" + ", ".join("B" if i == 0 else "N" if d is None else str(d) for i, d in enumerate(shape)) + "]"
    )
    if not isinstance(value, torch.Tensor):
        raise DataError(f"{name}: expected a torch.Tensor {wanted}, got {type(value).__name__}")
    if value.ndim != len(shape) or any(
        d is not None and d != n for d, n in zip(shape, value.shape, strict=True)
    ):
        raise DataError(f"{name}: expected {wanted}, got {list(value.shape)}")
    if value.is_floating_point() and not torch.isfinite(value).all():
        raise DataError(f"{name} holds non-finite values (NaN or inf)")


def block_index(adapter_name: str) -> int | None:
    """The encoder block an adapter sits in (`vision_encoder.layers.3.attn.qkv` -> 3)."""
    match = _BLOCK.search(f".{adapter_name}.")
    return int(match[1]) if match else None


def gate_table(summaries: list[GateSummary] | None) -> list[dict[str, object]]:
    """Gate statistics of one image as JSON-ready rows: adapter, block, mean active rank, high-space share."""
    return [
        {
            "adapter": s.name,
            "block": block_index(s.name),
            "mean_active_rank": round(float(s.mean_active_rank[0]), 3),
            "high_fraction": round(float(s.high_fraction[0]), 4),
        }
        for s in summaries or []
    ]


def from_pretrained(
    adapters_dir: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | None = None,
    model_type: str | None = None,
    device: str | torch.device | None = None,
    fast: bool | None = None,
    random_weights: bool = False,
) -> GaraSamPredictor:
    """Build SAM (and load adapters onto it) and wrap it in a predictor, in one call.

    The model type is, in order: `model_type`; the backbone recorded in the adapter folder; a type
    named in the checkpoint's file name (`sam_vit_b_01ec64.pth`); `tiny` when no checkpoint is
    given (the bundled model). `device` defaults to CUDA when available. `fast` (default: on for
    CUDA) runs the encoder on the fast path (bf16, fused attention and adapters, a CUDA graph per
    repeated input shape). A real model type without a checkpoint is refused (its weights would be
    random) unless `random_weights=True`. The model is built by `garasam.assembly.build_model`.
    """
    spec = ModelSpec(model_type, checkpoint, None if adapters_dir is None else Path(adapters_dir))
    model = build_model(spec, device=device, fast=fast, cuda_graphs=True, random_weights=random_weights)
    return GaraSamPredictor(model)
