"""SAM model types: the transformers config of each backbone we support.

`vit_b`, `vit_l`, `vit_h` are the official Segment Anything encoders; `tiny` is the same
architecture shrunk (256 px input, 6 blocks, 2 of them global) so that CPU tests and the
embedded demo run in seconds.

Each encoder comes in three families, the paper's Table 1 baselines: SAM itself (`vit_b`), HQ-SAM
(`hq_vit_b`: transformers' `SamHQModel`, SAM plus a high-quality output token) and RobustSAM
(`robust_vit_b`: `garasam.models.robust_sam`, SAM plus its anti-degradation modules). All three
share SAM's image encoder, so adapters inject into any of them alike.

SAM 2.1 (`sam2.1_hiera_t` ... `sam2.1_hiera_l`, `sam2.1_mini`; `garasam.models.sam2`) is a fourth
family with its own (Hiera) encoders.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PretrainedConfig, Sam2Config, Sam2VideoConfig, SamConfig, SamHQConfig

from garasam.errors import ConfigError
from garasam.models.sam2 import SAM2_TYPES, HieraSpec, sam2_architecture, sam2_config


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


ENCODERS: dict[str, EncoderSpec] = {
    "vit_b": EncoderSpec(768, 12, 12, (2, 5, 8, 11)),
    "vit_l": EncoderSpec(1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": EncoderSpec(1280, 32, 16, (7, 15, 23, 31)),
    "tiny": EncoderSpec(160, 6, 4, (2, 5), image_size=256, window_size=8, output_channels=64, mlp_dim=640),
}

# family -> (model type prefix, name in messages); SAM's types carry no prefix
FAMILIES: dict[str, tuple[str, str]] = {
    "sam": ("", "SAM"),
    "hq": ("hq_", "HQ-SAM"),
    "robust": ("robust_", "RobustSAM"),
    "sam2": ("sam2.1_", "SAM 2.1"),
}
# the families built on SAM 1's ViT encoders (ENCODERS); SAM 2.1 has its own (SAM2_TYPES)
VIT_FAMILIES = ("sam", "hq", "robust")

MODEL_TYPES: dict[str, EncoderSpec | HieraSpec] = {
    **{f"{FAMILIES[f][0]}{encoder}": spec for f in VIT_FAMILIES for encoder, spec in ENCODERS.items()},
    **SAM2_TYPES,
}

# RobustSAM has no transformers class: its config is SamConfig with this attribute set to "robust".
FAMILY_ATTRIBUTE = "garasam_family"


def family_of(model_type: str) -> str:
    """ "sam", "hq", "robust" or "sam2": which model a type builds (`hq_vit_b` -> "hq")."""
    for family, (prefix, _) in FAMILIES.items():
        if prefix and model_type.startswith(prefix):
            return family
    return "sam"


def encoder_of(model_type: str) -> str:
    """The image encoder of a type, its name without the family prefix (`hq_vit_b` -> `vit_b`)."""
    return model_type.removeprefix(FAMILIES[family_of(model_type)][0])


def model_type_name(family: str, encoder: str) -> str:
    """The model type of `encoder` in `family` (("hq", "vit_b") -> `hq_vit_b`)."""
    return f"{FAMILIES[family][0]}{encoder}"


def family_of_config(config: PretrainedConfig) -> str:
    """The family a transformers config describes (SamHQConfig -> "hq", Sam2Config -> "sam2", our
    RobustSAM marker -> "robust")."""
    if isinstance(config, SamHQConfig):
        return "hq"
    if isinstance(config, Sam2Config | Sam2VideoConfig):
        return "sam2"
    return "robust" if getattr(config, FAMILY_ATTRIBUTE, None) == "robust" else "sam"


# config.json `model_type` -> the transformers config class of the families saved as folders
CONFIG_CLASSES: dict[str, type[PretrainedConfig]] = {
    "sam": SamConfig,
    "sam_hq": SamHQConfig,
    "sam2": Sam2Config,
    "sam2_video": Sam2VideoConfig,
}


def sam_config_from_dict(data: dict) -> PretrainedConfig:
    """A config.json's content as a config of its family (`model_type` "sam", "sam_hq" or "sam2")."""
    declared = data.get("model_type")
    if declared not in CONFIG_CLASSES:
        raise ValueError(f"describes a {declared!r} model, not SAM, SAM-HQ or SAM 2")
    return CONFIG_CLASSES[declared].from_dict(data)


def sam_config(model_type: str) -> PretrainedConfig:
    """Return the transformers config for `model_type` (no weights are touched): a `SamConfig`, a
    `SamHQConfig` for HQ-SAM, a `SamConfig` marked as RobustSAM for RobustSAM, a `Sam2Config` for SAM 2.1."""
    if model_type not in MODEL_TYPES:
        raise ConfigError(f"unknown SAM model type {model_type!r}; choose one of {sorted(MODEL_TYPES)}")
    family, encoder = family_of(model_type), encoder_of(model_type)
    if family == "sam2":
        return sam2_config(model_type)
    spec = ENCODERS[encoder]
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
    if encoder == "tiny":
        decoder.update(mlp_dim=256, num_attention_heads=4, iou_head_hidden_dim=64)
    if family == "hq":  # the HQ decoder reads the first global block's features (vit_dim wide)
        decoder.update(vit_dim=spec.hidden_size)
        return SamHQConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
    extra = {FAMILY_ATTRIBUTE: "robust"} if family == "robust" else {}
    return SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder, **extra)


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
        "vit_dim",
    ),
}


def architecture(config: PretrainedConfig) -> dict[str, object]:
    """The architecture-defining fields of `config`, per sub-config, in comparable form (its family too)."""
    if family_of_config(config) == "sam2":
        return sam2_architecture(config)
    return {
        "family": family_of_config(config),
        **{
            part: {field: _comparable(getattr(getattr(config, part), field, None)) for field in fields}
            for part, fields in _ARCHITECTURE_FIELDS.items()
        },
    }


def _comparable(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def model_type_of_config(config: PretrainedConfig) -> str | None:
    """The model type whose architecture `config` describes, or None if it matches none of ours."""
    wanted = architecture(config)
    return next((name for name in MODEL_TYPES if architecture(sam_config(name)) == wanted), None)


def encoder_shape_of_config(config: PretrainedConfig) -> tuple[int, int]:
    """(width, blocks) of the image encoder a config describes: the ViT's, or Hiera's first-stage
    width and all its blocks (what `model_type_of_encoder` and error messages use)."""
    if family_of_config(config) == "sam2":
        backbone = config.vision_config.backbone_config
        return int(backbone.hidden_size), int(sum(backbone.blocks_per_stage))
    vision = config.vision_config
    return int(vision.hidden_size), int(vision.num_hidden_layers)


def model_type_of_encoder(hidden_size: int, num_hidden_layers: int, family: str = "sam") -> str | None:
    """The model type of `family` with this image-encoder width and depth (what a bare state dict reveals)."""
    return next(
        (
            name
            for name, spec in MODEL_TYPES.items()
            if family_of(name) == family
            and (spec.hidden_size, spec.num_hidden_layers) == (hidden_size, num_hidden_layers)
        ),
        None,
    )
