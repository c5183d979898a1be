"""Image features, the mask decoder call and the input geometry, the same for every family.

SAM's decoder reads the image embeddings only; HQ-SAM's and RobustSAM's also read the output of the
image encoder's first global-attention block; SAM 2.1's reads two higher-resolution FPN maps (after
its decoder's 1x1 projections). Training, evaluation and prediction encode an image once and decode
many prompts against it, so they carry these as one `ImageFeatures`.
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
    intermediate: tuple[torch.Tensor, ...] = ()  # SAM 2.1: the two high-resolution maps, finest first

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


def encode_images(model: PreTrainedModel, pixel_values: torch.Tensor) -> ImageFeatures:
    """Run the image encoder (with gradients if enabled: training calls this too)."""
    family = family_of_config(model.config)
    if family == "sam2":
        return _encode_sam2(model, pixel_values)
    output = model.vision_encoder(pixel_values)
    if family == "sam":
        return ImageFeatures(output.last_hidden_state)
    return ImageFeatures(output.last_hidden_state, (output.intermediate_embeddings[0],))


def _encode_sam2(model: PreTrainedModel, pixel_values: torch.Tensor) -> ImageFeatures:
    """SAM 2's image path as `Sam2Model.get_image_embeddings` runs it, without its no_grad: the FPN maps
    (the two finer ones projected by the decoder), the no-memory embedding added to the coarsest."""
    maps = model.get_image_features(pixel_values).fpn_hidden_states  # each [h * w, B, C]
    maps = [*maps[:-1], maps[-1] + model.no_memory_embedding]
    batch = pixel_values.shape[0]
    maps = [
        m.permute(1, 2, 0).reshape(batch, -1, *size)
        for m, size in zip(maps, model.backbone_feature_sizes, strict=True)
    ]
    return ImageFeatures(maps[-1], tuple(maps[:-1]))


def decode(model: PreTrainedModel, features: ImageFeatures, **prompts: object) -> object:
    """The model's forward on precomputed features: `prompts` are the transformers arguments
    (`input_points`, `input_labels`, `input_boxes`, `input_masks`, `multimask_output`, and for HQ-SAM
    `hq_token_only`). Returns transformers' output (`pred_masks`, `iou_scores`)."""
    if family_of_config(model.config) == "sam2":
        return model(image_embeddings=[*features.intermediate, features.embeddings], **prompts)
    extra = {"intermediate_embeddings": list(features.intermediate)} if features.intermediate else {}
    return model(image_embeddings=features.embeddings, **extra, **prompts)


def input_geometry(model: PreTrainedModel) -> tuple[int, bool]:
    """(input side, square): the model's input is `side` x `side` pixels; SAM 1's families keep the
    aspect ratio (longest side, zero padding), SAM 2 stretches the image to the square (`square`)."""
    config = model.config
    if family_of_config(config) == "sam2":
        return int(config.prompt_encoder_config.image_size), True
    return int(config.vision_config.image_size), False
