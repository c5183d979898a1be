"""SAM 2.1 in image mode: transformers' `Sam2Model` for Meta's Hiera encoders, and their checkpoints.

SAM 2.1's image path is a hierarchical Hiera encoder (four stages; windowed attention except a few
global blocks; the first block of stages 2-4 pools its queries 2x), an FPN neck, the "no memory"
embedding added to the lowest-resolution map (what SAM 2 does for a single image), and SAM's decoder
reading two higher-resolution maps besides. The video modules of Meta's checkpoints (memory
attention, memory encoder, object pointers) are not part of image mode and are dropped on load.

Model types: `sam2.1_hiera_t`, `sam2.1_hiera_s`, `sam2.1_hiera_b+`, `sam2.1_hiera_l` (Meta's
numbers, `sam2/configs/sam2.1/*.yaml` of the `sam2` package), `sam2.1_mini`, the same architecture
shrunk for CPU tests (256 px, stages 1-1-2-1, 32 channels), and `sam2.1_tiny`, the bundled one
(256 px, stages 1-2-3-1, 32 channels, trained on synthetic scenes and clips).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import Sam2Config


@dataclass(frozen=True)
class HieraSpec:
    """The numbers that distinguish one SAM 2.1 image encoder from another."""

    embed_dim: int
    num_heads: int
    stages: tuple[int, ...]
    global_blocks: tuple[int, ...]
    window_background: tuple[int, int] = (7, 7)
    windows: tuple[int, ...] = (8, 4, 14, 7)
    image_size: int = 1024
    fpn_width: int = 256  # the neck's and the decoder's width
    # the decoder's MLP width, heads and IoU-head width; None: SAM 2.1's (2048, 8, 256)
    decoder_shape: tuple[int, int, int] | None = None

    @property
    def hidden_size(self) -> int:
        """The width of the first stage (the one the patch embedding writes)."""
        return self.embed_dim

    @property
    def num_hidden_layers(self) -> int:
        return sum(self.stages)

    @property
    def stage_widths(self) -> list[int]:
        return [self.embed_dim * 2**i for i in range(len(self.stages))]


SAM2_TYPES: dict[str, HieraSpec] = {
    "sam2.1_hiera_t": HieraSpec(96, 1, (1, 2, 7, 2), (5, 7, 9)),
    "sam2.1_hiera_s": HieraSpec(96, 1, (1, 2, 11, 2), (7, 10, 13)),
    "sam2.1_hiera_b+": HieraSpec(112, 2, (2, 3, 16, 3), (12, 16, 20), window_background=(14, 14)),
    "sam2.1_hiera_l": HieraSpec(144, 2, (2, 6, 36, 4), (23, 33, 43), windows=(8, 4, 16, 8)),
    "sam2.1_mini": HieraSpec(32, 1, (1, 1, 2, 1), (3,), image_size=256, fpn_width=64),
    # the bundled SAM 2.1 (garasam/assets/sam2.1_tiny.safetensors): one block deeper in stages 2-3
    # than the mini, so that a file of one is never taken for the other; the bundled tiny SAM's
    # decoder shape, so that its trained decoder can seed this one (garasam/video/pretrain_tiny.py)
    "sam2.1_tiny": HieraSpec(
        32, 1, (1, 2, 3, 1), (5,), image_size=256, fpn_width=64, decoder_shape=(256, 4, 64)
    ),
}


def sam2_config(model_type: str) -> Sam2Config:
    """transformers' `Sam2Config` for a SAM 2.1 model type (no weights are touched)."""
    spec = SAM2_TYPES[model_type]
    widths = spec.stage_widths
    grid = spec.image_size // 4  # the patch embedding's stride
    backbone = {
        "model_type": "sam2_hiera_det_model",
        "hidden_size": spec.embed_dim,
        "num_attention_heads": spec.num_heads,
        "blocks_per_stage": list(spec.stages),
        "embed_dim_per_stage": widths,
        "num_attention_heads_per_stage": [spec.num_heads * 2**i for i in range(len(spec.stages))],
        "window_size_per_stage": list(spec.windows),
        "global_attention_blocks": list(spec.global_blocks),
        "window_positional_embedding_background_size": list(spec.window_background),
        "image_size": [spec.image_size, spec.image_size],
    }
    vision = {
        "backbone_config": backbone,
        "backbone_channel_list": widths[::-1],
        "backbone_feature_sizes": [[grid // 2**i, grid // 2**i] for i in range(3)],
        "fpn_hidden_size": spec.fpn_width,
    }
    prompt = {"hidden_size": spec.fpn_width, "image_size": spec.image_size}
    return Sam2Config(
        vision_config=vision,
        prompt_encoder_config=prompt,
        mask_decoder_config={"hidden_size": spec.fpn_width} | _decoder_shape(spec),
    )


def _decoder_shape(spec: HieraSpec) -> dict[str, int]:
    if spec.decoder_shape is None:
        return {}
    mlp, heads, iou_hidden = spec.decoder_shape
    return {"mlp_dim": mlp, "num_attention_heads": heads, "iou_head_hidden_dim": iou_hidden}


def _mlp(names: tuple[str, ...]) -> Callable[[re.Match[str]], str]:
    """`.layers.<i>.` of an official MLP -> transformers' name for its i-th Linear."""
    return lambda match: f".{names[int(match[1])]}."


# Meta's SAM 2 key -> transformers' Sam2Model key, applied in order (derived from the two modules'
# structures, checked numerically against the `sam2` package in tests/models/test_sam2_parity.py).
_RENAMES: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"^no_mem_embed$", "no_memory_embedding"),
        (r"^image_encoder\.trunk\.", "vision_encoder.backbone."),
        (r"^image_encoder\.neck\.convs\.(\d+)\.conv\.", r"vision_encoder.neck.convs.\1."),
        (r"\.patch_embed\.proj\.", ".patch_embed.projection."),
        (r"^(vision_encoder\.backbone\.blocks\.\d+)\.norm(\d)\.", r"\1.layer_norm\2."),
        (
            r"^(vision_encoder\.backbone\.blocks\.\d+\.mlp)\.layers\.([01])\.",
            lambda m: f"{m[1]}.{('proj_in', 'proj_out')[int(m[2])]}.",
        ),
        (r"^sam_prompt_encoder\.", "prompt_encoder."),
        (r"\.pe_layer\.positional_encoding_gaussian_matrix$", ".shared_embedding.positional_embedding"),
        (
            r"\.mask_downscaling\.([01346])\.",
            lambda m: (
                "."
                + {
                    "0": "mask_embed.conv1",
                    "1": "mask_embed.layer_norm1",
                    "3": "mask_embed.conv2",
                    "4": "mask_embed.layer_norm2",
                    "6": "mask_embed.conv3",
                }[m[1]]
                + "."
            ),
        ),
        (r"^sam_mask_decoder\.", "mask_decoder."),
        (r"\.out_proj\.", ".o_proj."),
        (r"^(mask_decoder\.transformer\.layers\.\d+)\.norm(\d)\.", r"\1.layer_norm\2."),
        (
            r"^(mask_decoder\.transformer\.layers\.\d+\.mlp)\.layers\.([01])\.",
            lambda m: f"{m[1]}.{('proj_in', 'proj_out')[int(m[2])]}.",
        ),
        (r"\.norm_final_attn\.", ".layer_norm_final_attn."),
        (
            r"\.output_upscaling\.([013])\.",
            lambda m: (
                "." + {"0": "upscale_conv1", "1": "upscale_layer_norm", "3": "upscale_conv2"}[m[1]] + "."
            ),
        ),
        (
            r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head))\.layers\.([012])\.",
            lambda m: f"{m[1]}.{('proj_in', 'layers.0', 'proj_out')[int(m[2])]}.",
        ),
    )
)
# Video-mode parts of Meta's checkpoints (memory attention, memory encoder, object pointers), with
# no place in image mode; in video mode renamed to `Sam2VideoModel`'s names before _RENAMES run.
_VIDEO_ONLY = re.compile(
    r"^(memory_attention|memory_encoder|obj_ptr_proj|obj_ptr_tpos_proj|mask_downsample)\.|"
    r"^(maskmem_tpos_enc|no_mem_pos_enc|no_obj_ptr|no_obj_embed_spatial)$"
)
_DOWNSAMPLER = {"0": "0.conv", "1": "0.layer_norm", "3": "1.conv", "4": "1.layer_norm", "6": "2.conv"}
_DOWNSAMPLER |= {"7": "2.layer_norm", "9": "3.conv", "10": "3.layer_norm"}
_VIDEO_RENAMES: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (r"^maskmem_tpos_enc$", "memory_temporal_positional_encoding"),
        (r"^no_mem_pos_enc$", "no_memory_positional_encoding"),
        (r"^no_obj_ptr$", "no_object_pointer"),
        (r"^no_obj_embed_spatial$", "occlusion_spatial_embedding_parameter"),
        (r"^(memory_attention\.layers\.\d+)\.norm(\d)\.", r"\1.layer_norm\2."),
        (r"^memory_attention\.norm\.", "memory_attention.layer_norm."),
        (r"^memory_encoder\.mask_downsampler\.encoder\.12\.", "memory_encoder.mask_downsampler.final_conv."),
        (
            r"^memory_encoder\.mask_downsampler\.encoder\.(\d+)\.",
            lambda m: f"memory_encoder.mask_downsampler.layers.{_DOWNSAMPLER[m[1]]}.",
        ),
        (r"^memory_encoder\.pix_feat_proj\.", "memory_encoder.feature_projection."),
        (r"^memory_encoder\.out_proj\.", "memory_encoder.projection."),
        (r"^memory_encoder\.fuser\.", "memory_encoder.memory_fuser."),
        (r"^(memory_encoder\.memory_fuser\.layers\.\d+)\.gamma$", r"\1.scale"),
        (r"^(memory_encoder\.memory_fuser\.layers\.\d+)\.dwconv\.", r"\1.depthwise_conv."),
        (r"^(memory_encoder\.memory_fuser\.layers\.\d+)\.norm\.", r"\1.layer_norm."),
        (r"^(memory_encoder\.memory_fuser\.layers\.\d+)\.pwconv(\d)\.", r"\1.pointwise_conv\2."),
        (
            r"^obj_ptr_proj\.layers\.([012])\.",
            lambda m: f"object_pointer_proj.{('proj_in', 'layers.0', 'proj_out')[int(m[1])]}.",
        ),
        (r"^obj_ptr_tpos_proj\.", "temporal_positional_encoding_projection_layer."),
    )
)
_POINT_EMBEDDING = re.compile(r"^sam_prompt_encoder\.point_embeddings\.(\d+)\.weight$")
META_MARKER = "image_encoder.trunk."


def is_meta_sam2(state: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict is in Meta's SAM 2 layout (its Hiera trunk names)."""
    return any(key.startswith(META_MARKER) for key in state)


def from_meta_sam2(state: dict[str, torch.Tensor], video: bool = False) -> dict[str, torch.Tensor]:
    """Meta's SAM 2 keys -> transformers' keys: `Sam2Model`'s (video-only tensors dropped) or with
    `video` `Sam2VideoModel`'s (all kept); the point embeddings (one Embedding each in Meta's code)
    stacked into transformers' one table."""
    points: dict[int, torch.Tensor] = {}
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if _VIDEO_ONLY.search(key):
            if not video:
                continue
            for pattern, replacement in _VIDEO_RENAMES:
                key = pattern.sub(replacement, key)
        if match := _POINT_EMBEDDING.match(key):
            points[int(match[1])] = value
            continue
        for pattern, replacement in _RENAMES:
            key = pattern.sub(replacement, key)
        converted[key] = value
    if points:
        converted["prompt_encoder.point_embed.weight"] = torch.cat([points[i] for i in sorted(points)])
    if (
        video
        and "memory_encoder.projection.weight" not in converted
        and "memory_encoder.feature_projection.weight" in converted
    ):
        # Meta's memory encoder has no output projection when its input and memory widths agree (an
        # Identity); transformers always has one: the identity as a 1x1 convolution
        width = converted["memory_encoder.feature_projection.weight"].shape[0]
        converted["memory_encoder.projection.weight"] = torch.eye(width).view(width, width, 1, 1)
        converted["memory_encoder.projection.bias"] = torch.zeros(width)
    return converted


# The config fields that decide a SAM 2 network's parameters and computation (cf. registry.architecture).
_BACKBONE_FIELDS = (
    "hidden_size",
    "num_attention_heads",
    "blocks_per_stage",
    "embed_dim_per_stage",
    "num_attention_heads_per_stage",
    "window_size_per_stage",
    "global_attention_blocks",
    "window_positional_embedding_background_size",
    "image_size",
    "patch_kernel_size",
    "patch_stride",
    "patch_padding",
    "query_stride",
    "num_query_pool_stages",
    "mlp_ratio",
)


def sam2_architecture(config: Sam2Config) -> dict[str, object]:
    """The architecture-defining fields of a `Sam2Config`, in comparable form."""

    def plain(value: object) -> object:
        return list(value) if isinstance(value, tuple) else value

    vision = config.vision_config
    return {
        "family": "sam2",
        "backbone": {f: plain(getattr(vision.backbone_config, f, None)) for f in _BACKBONE_FIELDS},
        "neck": {
            f: plain(getattr(vision, f, None))
            for f in (
                "backbone_channel_list",
                "backbone_feature_sizes",
                "fpn_hidden_size",
                "fpn_top_down_levels",
            )
        },
        "prompt": {
            f: getattr(config.prompt_encoder_config, f, None)
            for f in ("hidden_size", "image_size", "patch_size")
        },
        "decoder": {
            f: getattr(config.mask_decoder_config, f, None)
            for f in (
                "hidden_size",
                "mlp_dim",
                "num_hidden_layers",
                "num_attention_heads",
                "iou_head_hidden_dim",
            )
        },
    }


# Video-mode tensors in transformers' layout (a `Sam2VideoModel` folder): dropped in image mode.
HF_VIDEO_ONLY = re.compile(
    r"^(memory_attention|memory_encoder|object_pointer_proj|temporal_positional_encoding_projection_layer|"
    r"mask_downsample)\.|^(memory_temporal_positional_encoding|no_memory_positional_encoding|no_object_pointer|"
    r"occlusion_spatial_embedding_parameter)$"
)
