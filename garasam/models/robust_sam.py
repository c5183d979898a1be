"""RobustSAM (Chen et al., CVPR 2024) on transformers' SAM: the paper's strongest robust baseline.

RobustSAM keeps SAM's image encoder, prompt encoder and two-way transformer and adds, in the mask
decoder only:
- robust output tokens (one per mask) that replace SAM's mask tokens, each passed through a token
  block (two instance normalisations and a small MLP, "AOTG") and its own hypernetwork MLP;
- anti-degradation feature blocks ("AMFG") on three feature maps: the first global encoder block's
  output, the final image embedding (both upsampled 4x and summed) and the decoder's upscaled mask
  features. Each block normalises degradations (a selective-kernel conv mixing a batch-normalised and
  an instance-normalised branch, then channel attention), fuses the two halves with a 3x3 conv and
  resamples.

Written from the released package `robust-segment-anything` 1.0.0 (MIT), checked against it with
random weights in `tests/models/test_robust_sam.py`. Where that code does something odd, we keep its
outputs and say so:
- its Fourier block computes a modulated spectrum and returns its input unchanged: the block is the
  identity, so we skip it; its 1x1 conv is still loaded (checkpoints hold it) and never used;
- its token block reshapes a mask token into four rows and runs the MLP on each; only row 0 reaches
  the masks it returns with matching IoU scores (a multimask call returns 15 masks beside 3 scores,
  whose first three are rows 0 of tokens 1-3), so we compute row 0 only. The official decoder takes
  one prompt per call; ours takes a batch, each prompt computed as the official call would;
- the decoder runs in RobustSAM's inference mode (`clear=False` in the official code, the robust
  tokens), and its batch norms always use the checkpoint's statistics: the decoder is frozen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import SamConfig, SamHQVisionConfig, SamModel
from transformers.models.sam.configuration_sam import SamMaskDecoderConfig
from transformers.models.sam.modeling_sam import (
    SamFeedForward,
    SamImageSegmentationOutput,
    SamLayerNorm,
    SamMaskDecoder,
)
from transformers.models.sam_hq.modeling_sam_hq import SamHQVisionEncoder

from garasam.models.mask_decoders import apply_hypernetworks, two_way_step

_INSTANCE_NORM_EPS = 1e-5  # torch's InstanceNorm default, what the official blocks use


class KernelSelector(nn.Module):
    """Soft per-channel, per-region choice between two conv branches (a 4 x 4 grid of weights)."""

    grid = 4

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        pooled = channels * self.grid**2
        self.fc = nn.Linear(pooled, pooled // reduction, bias=False)
        self.attention_a = nn.Linear(pooled // reduction, pooled)
        self.attention_b = nn.Linear(pooled // reduction, pooled)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch, channels, height, width = features.shape
        cells = self.grid
        if height % cells == 0 and width % cells == 0:  # the same means with fixed shapes (ONNX export)
            pooled = features.reshape(batch, channels, cells, height // cells, cells, width // cells)
            pooled = pooled.mean(dim=(3, 5)).reshape(batch, -1)
        else:
            pooled = F.adaptive_avg_pool2d(features, cells).reshape(batch, -1)
        hidden = F.relu(self.fc(pooled))
        shape = (batch, channels, self.grid, self.grid)
        weights = torch.stack([self.attention_a(hidden).view(shape), self.attention_b(hidden).view(shape)])
        weights = weights.softmax(dim=0)
        return (
            F.interpolate(weights[0], size=(height, width), mode="nearest"),
            F.interpolate(weights[1], size=(height, width), mode="nearest"),
        )


class SelectiveKernelConv(nn.Module):
    """Two 3x3 convs, one on batch-normalised and one on instance-normalised input, mixed by a selector.

    Instance normalisation removes per-image contrast and colour shifts (what many degradations
    change); batch normalisation keeps them; the selector decides per region which to trust.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.batch_norm = nn.BatchNorm2d(channels)
        self.conv_batch = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.conv_instance = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.selector = KernelSelector(channels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        norm = self.batch_norm  # frozen: the checkpoint's statistics, in training mode too
        batch_normed = F.batch_norm(
            features, norm.running_mean, norm.running_var, norm.weight, norm.bias, False, 0.0, norm.eps
        )
        instance_normed = F.instance_norm(features, eps=_INSTANCE_NORM_EPS)
        out_batch = self.conv_batch(F.leaky_relu(batch_normed))
        out_instance = self.conv_instance(F.leaky_relu(instance_normed))
        weight_batch, weight_instance = self.selector(out_batch + out_instance)
        return out_batch * weight_batch + out_instance * weight_instance


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: rescale each channel by a weight computed from the pooled map."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // reduction)
        self.fc2 = nn.Linear(channels // reduction, channels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        weights = torch.sigmoid(self.fc2(F.relu(self.fc1(features.mean(dim=(2, 3))))))
        return features * weights[:, :, None, None]


class DegradationNormalisation(nn.Module):
    """The input beside its selective-kernel version (2x the channels), channel-attended."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.selective = SelectiveKernelConv(channels)
        self.channel_attention = ChannelAttention(2 * channels)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.channel_attention(torch.cat([features, self.selective(features)], dim=1))


class ResampleHead(nn.Module):
    """conv, LayerNorm, GELU, conv: 4x up with transposed convs, or same-size 3x3 convs."""

    def __init__(self, channels: int, hidden: int, out: int, upsample: bool) -> None:
        super().__init__()
        if upsample:
            self.conv1: nn.Module = nn.ConvTranspose2d(channels, hidden, kernel_size=2, stride=2)
            self.conv2: nn.Module = nn.ConvTranspose2d(hidden, out, kernel_size=2, stride=2)
        else:
            self.conv1 = nn.Conv2d(channels, hidden, 3, padding=1)
            self.conv2 = nn.Conv2d(hidden, out, 3, padding=1)
        self.norm = SamLayerNorm(hidden, data_format="channels_first")

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.gelu(self.norm(self.conv1(features))))


class RobustFeatureBlock(nn.Module):
    """One anti-degradation feature block: normalise, fuse back to `channels`, resample."""

    def __init__(self, channels: int, head: ResampleHead) -> None:
        super().__init__()
        self.normalise = DegradationNormalisation(channels)
        # The official Fourier block's conv: in every checkpoint, never used (its block is the identity).
        self.fourier_conv = nn.Conv2d(2 * channels, 2 * channels, kernel_size=1)
        self.fuse = nn.Conv2d(2 * channels, channels, 3, padding=1)
        self.head = head

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.fuse(self.normalise(features)))


class RobustTokenBlock(nn.Module):
    """Maps a robust output token to its hypernetwork input: instance-normalise twice, MLP on the
    first quarter (row 0 of the official four-row reshape; see the module docstring)."""

    def __init__(self, hidden_size: int, num_mask_tokens: int) -> None:
        super().__init__()
        self.hidden_size, self.width = hidden_size, hidden_size // num_mask_tokens
        self.fc1 = nn.Linear(self.width, self.width)
        self.fc2 = nn.Linear(self.width, self.width * num_mask_tokens)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        width = (self.hidden_size,)  # a constant, not read from the tensor: the ONNX tracer needs one
        normed = F.layer_norm(tokens, width, eps=_INSTANCE_NORM_EPS)
        normed = F.layer_norm(normed, width, eps=_INSTANCE_NORM_EPS)
        return self.fc2(F.relu(self.fc1(normed[..., : self.width])))


class RobustSamMaskDecoder(SamMaskDecoder):
    """SAM's mask decoder with RobustSAM's robust tokens and anti-degradation feature blocks."""

    def __init__(self, config: SamMaskDecoderConfig, vit_dim: int) -> None:
        super().__init__(config)
        size = self.hidden_size
        self.robust_tokens = nn.Embedding(self.num_mask_tokens, size)
        self.robust_mlp = SamFeedForward(size, size, size // 8, 3)
        self.token_block = RobustTokenBlock(size, self.num_mask_tokens)
        self.early_feature_block = RobustFeatureBlock(
            vit_dim, ResampleHead(vit_dim, size, size // 8, upsample=True)
        )
        self.final_feature_block = RobustFeatureBlock(
            size, ResampleHead(size, size, size // 8, upsample=True)
        )
        self.mask_feature_block = RobustFeatureBlock(
            size // 8, ResampleHead(size // 8, size // 4, size // 8, upsample=False)
        )

    def forward(  # type: ignore[override]
        self,
        image_embeddings: torch.Tensor,
        image_positional_embeddings: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor | None,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        intermediate_embeddings: list[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        early = intermediate_embeddings[0].permute(0, 3, 1, 2)
        image_features = self.early_feature_block(early) + self.final_feature_block(image_embeddings)
        tokens = torch.cat([self.iou_token.weight, self.robust_tokens.weight], dim=0)
        iou_token_out, mask_tokens_out, upscaled = two_way_step(
            self,
            tokens,
            image_embeddings,
            image_positional_embeddings,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
        )
        points = mask_tokens_out.shape[1]
        mask_features = self.mask_feature_block(upscaled) + image_features.repeat_interleave(points, 0)
        masks = apply_hypernetworks(self.robust_mlp(self.token_block(mask_tokens_out)), mask_features)
        iou_pred = self.iou_prediction_head(iou_token_out)
        chosen = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, :, chosen], iou_pred[:, :, chosen]


class RobustSamModel(SamModel):
    """transformers' SamModel with RobustSAM's decoder; its encoder also returns the first global
    block's output (transformers' SAM-HQ encoder, the same weights as SAM's), which the decoder reads.

    Call it like `SamHQModel`: `model(pixel_values=..., ...)`, or with `image_embeddings` and the
    `intermediate_embeddings` that `get_image_embeddings` returns beside them.
    """

    def __init__(self, config: SamConfig) -> None:
        super().__init__(config)
        vision = {
            k: v
            for k, v in config.vision_config.to_dict().items()
            if k not in ("model_type", "transformers_version")
        }
        self.vision_encoder = SamHQVisionEncoder(SamHQVisionConfig(**vision))
        self.mask_decoder = RobustSamMaskDecoder(
            config.mask_decoder_config, vit_dim=config.vision_config.hidden_size
        )

    def encode(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Image embeddings and the global blocks' outputs (the first is what the decoder reads)."""
        output = self.vision_encoder(pixel_values=pixel_values)
        return output.last_hidden_state, output.intermediate_embeddings

    @torch.no_grad()
    def get_image_embeddings(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:  # type: ignore[override]
        return self.encode(pixel_values)

    def forward(  # type: ignore[override]
        self,
        pixel_values: torch.Tensor | None = None,
        input_points: torch.Tensor | None = None,
        input_labels: torch.Tensor | None = None,
        input_boxes: torch.Tensor | None = None,
        input_masks: torch.Tensor | None = None,
        image_embeddings: torch.Tensor | None = None,
        multimask_output: bool = True,
        intermediate_embeddings: list[torch.Tensor] | None = None,
        **kwargs: object,
    ) -> SamImageSegmentationOutput:
        if (pixel_values is None) == (image_embeddings is None):
            raise ValueError("give exactly one of pixel_values and image_embeddings")
        if pixel_values is not None:
            image_embeddings, intermediate_embeddings = self.encode(pixel_values)
        if not intermediate_embeddings:
            raise ValueError("RobustSAM's decoder needs intermediate_embeddings beside image_embeddings")
        if input_points is not None and input_labels is None:
            input_labels = torch.ones_like(input_points[:, :, :, 0], dtype=torch.int)
        sparse, dense = self.prompt_encoder(
            input_points=input_points,
            input_labels=input_labels,
            input_boxes=input_boxes,
            input_masks=input_masks,
        )
        positions = self.get_image_wide_positional_embeddings().repeat(image_embeddings.shape[0], 1, 1, 1)
        masks, iou_scores = self.mask_decoder(
            image_embeddings=image_embeddings,
            image_positional_embeddings=positions,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            intermediate_embeddings=intermediate_embeddings,
        )
        return SamImageSegmentationOutput(iou_scores=iou_scores, pred_masks=masks)
