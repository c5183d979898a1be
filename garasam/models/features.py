"""Image features and the mask decoder call, the same for SAM, HQ-SAM and RobustSAM.

SAM's decoder reads the image embeddings only; HQ-SAM's and RobustSAM's also read the output of the
image encoder's first global-attention block. Training, evaluation and prediction encode an image
once and decode many prompts against it, so they carry both as one `ImageFeatures`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from garasam.models.registry import family_of_config


@dataclass(frozen=True)
class ImageFeatures:
    """The image encoder's outputs a decoder reads: embeddings `[B, C, h, w]` and, for HQ-SAM and
    RobustSAM, the first global block's output `[B, H, W, D]` (empty for SAM)."""

    embeddings: torch.Tensor
    intermediate: tuple[torch.Tensor, ...] = ()

    def map(self, function: Callable[[torch.Tensor], torch.Tensor]) -> ImageFeatures:
        """The same features with `function` applied to every tensor (index, expand, move)."""
        return ImageFeatures(function(self.embeddings), tuple(function(t) for t in self.intermediate))

    def __getitem__(self, index: object) -> ImageFeatures:
        """Select images (a slice, a list of indices) from every tensor alike."""
        return self.map(lambda tensor: tensor[index])

    @property
    def device(self) -> torch.device:
        return self.embeddings.device

    def index_select(self, index: torch.Tensor) -> ImageFeatures:
        return self.map(lambda tensor: tensor.index_select(0, index))

    def expand(self, batch: int) -> ImageFeatures:
        """One image's features repeated (as a view) for `batch` prompt groups."""
        return self.map(lambda tensor: tensor.expand(batch, *tensor.shape[1:]))


def needs_intermediate(model: PreTrainedModel) -> bool:
    """Whether the model's decoder reads the first global block's output (HQ-SAM, RobustSAM)."""
    return family_of_config(model.config) != "sam"


def encode_images(model: PreTrainedModel, pixel_values: torch.Tensor) -> ImageFeatures:
    """Run the image encoder (with gradients if enabled: training calls this too)."""
    output = model.vision_encoder(pixel_values)
    if not needs_intermediate(model):
        return ImageFeatures(output.last_hidden_state)
    return ImageFeatures(output.last_hidden_state, (output.intermediate_embeddings[0],))


def decode(model: PreTrainedModel, features: ImageFeatures, **prompts: object) -> object:
    """The model's forward on precomputed features: `prompts` are the transformers arguments
    (`input_points`, `input_labels`, `input_boxes`, `input_masks`, `multimask_output`, and for HQ-SAM
    `hq_token_only`). Returns transformers' output (`pred_masks`, `iou_scores`)."""
    extra = {"intermediate_embeddings": list(features.intermediate)} if features.intermediate else {}
    return model(image_embeddings=features.embeddings, **extra, **prompts)
