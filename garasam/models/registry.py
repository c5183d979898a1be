"""SAM model types: the transformers `SamConfig` of each backbone we support.

`vit_b`, `vit_l`, `vit_h` are the official Segment Anything encoders; `tiny` is the same
architecture shrunk (256 px input, 6 blocks, 2 of them global) so that CPU tests and the
embedded demo run in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import SamConfig


@dataclass(frozen=True)
class EncoderSpec:
    """The numbers that distinguish one SAM image encoder from another."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    global_attn_indexes: tuple[int, ...]
    image_size: int = 1024
    window_size: int = 14
    output_channels: int = 256
    mlp_dim: int | None = None


MODEL_TYPES: dict[str, EncoderSpec] = {
    "vit_b": EncoderSpec(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": EncoderSpec(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": EncoderSpec(1280, 32, 16, (7, 15, 23, 31)),
    "tiny": EncoderSpec(160, 6, 4, (2, 5), image_size=256, window_size=8, output_channels=64, mlp_dim=640),
}


def sam_config(model_type: str) -> SamConfig:
    """Return the transformers `SamConfig` for `model_type` (no weights are touched)."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"unknown SAM model type {model_type!r}; choose one of {sorted(MODEL_TYPES)}")
    spec = MODEL_TYPES[model_type]
    width = spec.output_channels  # prompt encoder and mask decoder share the neck's width
    vision = dict(
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        global_attn_indexes=list(spec.global_attn_indexes),
        image_size=spec.image_size,
        window_size=spec.window_size,
        output_channels=width,
        num_pos_feats=width // 2,
        mlp_dim=spec.mlp_dim if spec.mlp_dim is not None else spec.hidden_size * 4,
    )
    prompt = dict(hidden_size=width, image_size=spec.image_size, patch_size=16)
    decoder = dict(hidden_size=width)
    if model_type == "tiny":
        decoder.update(mlp_dim=256, num_attention_heads=4, iou_head_hidden_dim=64)
    return SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


# The config fields that decide SAM's parameter shapes and forward computation; two configs that
# agree on these run the same network (dtype, paths and init ranges are irrelevant to a checkpoint).
_ARCHITECTURE_FIELDS: dict[str, tuple[str, ...]] = {
    "vision_config": (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "global_attn_indexes",
        "image_size",
        "patch_size",
        "num_channels",
        "window_size",
        "output_channels",
        "num_pos_feats",
        "mlp_dim",
        "qkv_bias",
        "use_abs_pos",
        "use_rel_pos",
        "hidden_act",
        "layer_norm_eps",
    ),
    "prompt_encoder_config": (
        "hidden_size",
        "image_size",
        "patch_size",
        "mask_input_channels",
        "num_point_embeddings",
        "hidden_act",
        "layer_norm_eps",
    ),
    "mask_decoder_config": (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "mlp_dim",
        "attention_downsample_rate",
        "num_multimask_outputs",
        "iou_head_depth",
        "iou_head_hidden_dim",
        "hidden_act",
        "layer_norm_eps",
    ),
}


def architecture(config: SamConfig) -> dict[str, dict[str, object]]:
    """The architecture-defining fields of `config`, per sub-config, in comparable form."""
    return {
        part: {field: _comparable(getattr(getattr(config, part), field, None)) for field in fields}
        for part, fields in _ARCHITECTURE_FIELDS.items()
    }


def _comparable(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def model_type_of_config(config: SamConfig) -> str | None:
    """The model type whose architecture `config` describes, or None if it matches none of ours."""
    wanted = architecture(config)
    return next((name for name in MODEL_TYPES if architecture(sam_config(name)) == wanted), None)


def model_type_of_encoder(hidden_size: int, num_hidden_layers: int) -> str | None:
    """The model type with this image-encoder width and depth (what a bare state dict reveals)."""
    return next(
        (
            name
            for name, spec in MODEL_TYPES.items()
            if (spec.hidden_size, spec.num_hidden_layers) == (hidden_size, num_hidden_layers)
        ),
        None,
    )
