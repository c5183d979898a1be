"""Mask decoders of SAM's extended families: HQ-SAM's (fixed) and the shared two-way step.

HQ-SAM's and RobustSAM's decoders both run SAM's two-way transformer on their own output tokens and
upscale its image output 4x, then add their feature paths. `two_way_step` is that shared part.

`HQSamMaskDecoder` is transformers' `SamHQMaskDecoder` with one fix: transformers (checked in 5.25)
binds the transformer's image output to an unused name and upscales the image embeddings from
before the transformer, while the official HQ-SAM (like SAM) upscales the transformer's output.
Its masks then differ from the official ones by about as much as the logits themselves (IoU scores
agree); `tests/models/test_baseline_parity.py` compares against the official package.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import SamHQModel
from transformers.models.sam_hq.modeling_sam_hq import SamHQMaskDecoder


def two_way_step(
    decoder: nn.Module,
    output_tokens: torch.Tensor,
    image_embeddings: torch.Tensor,
    image_positional_embeddings: torch.Tensor,
    sparse_prompt_embeddings: torch.Tensor | None,
    dense_prompt_embeddings: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SAM's decoder up to the hypernetworks, for `output_tokens` = [IoU token, mask tokens...].

    Returns the IoU token's output `[B, P, C]`, the mask tokens' `[B, P, T, C]` and the upscaled image
    features `[B * P, C / 8, 4h, 4w]` (B images, P prompt groups per image).
    """
    batch, channels, height, width = image_embeddings.shape
    points = sparse_prompt_embeddings.shape[1] if sparse_prompt_embeddings is not None else 1
    tokens = output_tokens.repeat(batch, points, 1, 1)
    if sparse_prompt_embeddings is not None:
        tokens = torch.cat((tokens, sparse_prompt_embeddings), dim=2)
    tokens = tokens.to(decoder.iou_token.weight.dtype)
    embeddings = (image_embeddings + dense_prompt_embeddings).repeat_interleave(points, 0)
    positions = image_positional_embeddings.repeat_interleave(points, 0)
    tokens_out, embeddings = decoder.transformer(
        point_embeddings=tokens,
        image_embeddings=embeddings,
        image_positional_embeddings=positions,
        attention_similarity=None,
    )
    embeddings = embeddings.transpose(2, 3).reshape(batch * points, channels, height, width)
    upscaled = decoder.activation(decoder.upscale_layer_norm(decoder.upscale_conv1(embeddings)))
    upscaled = decoder.activation(decoder.upscale_conv2(upscaled))
    return tokens_out[:, :, 0, :], tokens_out[:, :, 1 : output_tokens.shape[0], :], upscaled


def apply_hypernetworks(hyper_in: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Masks `[B, P, T, H, W]` from hypernetwork outputs `[B, P, T, C]` and features `[B * P, C, H, W]`."""
    batch, points = hyper_in.shape[:2]
    _, channels, height, width = features.shape
    masks = hyper_in @ features.reshape(batch, points, channels, height * width)
    return masks.reshape(batch, points, -1, height, width)


class HQSamMaskDecoder(SamHQMaskDecoder):
    """SamHQMaskDecoder computing what the official HQ-SAM computes (see the module docstring)."""

    def forward(  # type: ignore[override]
        self,
        image_embeddings: torch.Tensor,
        image_positional_embeddings: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor | None,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        hq_token_only: bool,
        intermediate_embeddings: list[torch.Tensor] | None = None,
        attention_similarity: torch.Tensor | None = None,
        target_embedding: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not intermediate_embeddings:
            raise ValueError("HQ-SAM's decoder needs intermediate_embeddings beside image_embeddings")
        if attention_similarity is not None or target_embedding is not None:
            raise ValueError("attention_similarity and target_embedding are not supported here")
        early = intermediate_embeddings[0].permute(0, 3, 1, 2)
        hq_features = self.encoder_conv2(
            self.activation(self.encoder_norm(self.encoder_conv1(image_embeddings)))
        )
        hq_features = hq_features + self.compress_vit_conv2(
            self.activation(self.compress_vit_norm(self.compress_vit_conv1(early)))
        )
        tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight, self.hq_token.weight], dim=0)
        iou_token_out, mask_tokens_out, upscaled = two_way_step(
            self,
            tokens,
            image_embeddings,
            image_positional_embeddings,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
        )
        points = mask_tokens_out.shape[1]
        upscaled_hq = self.mask_conv2(self.activation(self.mask_norm(self.mask_conv1(upscaled))))
        upscaled_hq = upscaled_hq + hq_features.repeat_interleave(points, 0)
        sam_tokens = self.num_mask_tokens - 1  # the last token is the HQ token
        hyper_sam = torch.stack(
            [mlp(mask_tokens_out[:, :, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=2
        )
        masks_sam = apply_hypernetworks(hyper_sam, upscaled)
        masks_hq = apply_hypernetworks(
            self.hq_mask_mlp(mask_tokens_out[:, :, sam_tokens : sam_tokens + 1, :]), upscaled_hq
        )
        iou_pred = self.iou_prediction_head(iou_token_out)
        if multimask_output:  # the three ambiguity masks, best-scored first (as transformers orders them)
            # topk over all three is a descending sort that ExecuTorch's kernels have (no aten::sort)
            iou_pred, order = iou_pred[:, :, 1:sam_tokens].topk(sam_tokens - 1, dim=2)
            masks_sam = masks_sam[:, :, 1:sam_tokens].gather(
                2, order[..., None, None].expand(-1, -1, -1, *masks_sam.shape[-2:])
            )
        else:
            iou_pred, masks_sam = iou_pred[:, :, :1], masks_sam[:, :, :1]
        return (masks_hq if hq_token_only else masks_sam + masks_hq), iou_pred


class HQSamModel(SamHQModel):
    """transformers' SamHQModel with `HQSamMaskDecoder` (the same parameters, the official outputs)."""

    def __init__(self, config: object) -> None:
        super().__init__(config)
        self.mask_decoder.__class__ = HQSamMaskDecoder  # a forward change only: same modules and names
