"""Model types from configs and from encoder shapes (what build_sam's error messages rely on)."""

from __future__ import annotations

import pytest
import torch

from garasam.models import MODEL_TYPES, sam_config
from garasam.models.build import MODEL_CLASSES
from garasam.models.registry import (
    architecture,
    encoder_of,
    family_of,
    model_type_name,
    model_type_of_config,
    model_type_of_encoder,
)


@pytest.mark.parametrize("model_type", sorted(MODEL_TYPES))
def test_config_and_encoder_shape_identify_the_type(model_type: str) -> None:
    config = sam_config(model_type)
    assert model_type_of_config(config) == model_type
    with torch.device("meta"):  # shapes only, no weights
        encoder = MODEL_CLASSES[family_of(model_type)](config).vision_encoder
    blocks = encoder.backbone.blocks if family_of(model_type) == "sam2" else encoder.layers
    qkv = blocks[0].attn.qkv.weight
    spec = MODEL_TYPES[model_type]
    assert qkv.shape == (3 * spec.hidden_size, spec.hidden_size)
    family = family_of(model_type)
    assert model_type_of_encoder(qkv.shape[1], len(blocks), family) == model_type
    assert model_type_name(family, encoder_of(model_type)) == model_type


@pytest.mark.parametrize("encoder", ["vit_b", "tiny"])
def test_the_families_share_sams_encoder_and_prompt_encoder(encoder: str) -> None:
    """HQ-SAM and RobustSAM differ from SAM in the decoder only: the same encoder and prompt encoder
    (adapters trained on one encoder shape fit the others), the HQ decoder told the encoder's width."""
    sam = architecture(sam_config(encoder))
    for family in ("hq", "robust"):
        other = architecture(sam_config(model_type_name(family, encoder)))
        assert other["family"] == family
        assert other["vision_config"] == sam["vision_config"]
        assert other["prompt_encoder_config"] == sam["prompt_encoder_config"]
    hq = sam_config(f"hq_{encoder}").mask_decoder_config
    assert hq.vit_dim == MODEL_TYPES[encoder].hidden_size


@pytest.mark.parametrize(
    ("model_type", "hidden_size", "depth", "heads", "global_blocks"),
    [
        ("vit_b", 768, 12, 12, [2, 5, 8, 11]),
        ("vit_l", 1024, 24, 16, [5, 11, 17, 23]),
        ("vit_h", 1280, 32, 16, [7, 15, 23, 31]),
    ],
)
def test_official_encoder_numbers(
    model_type: str, hidden_size: int, depth: int, heads: int, global_blocks: list[int]
) -> None:
    vision = sam_config(model_type).vision_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads) == (
        hidden_size,
        depth,
        heads,
    )
    assert list(vision.global_attn_indexes) == global_blocks
    assert (vision.image_size, vision.window_size, vision.output_channels, vision.mlp_dim) == (
        1024,
        14,
        256,
        4 * hidden_size,
    )


def test_a_changed_architecture_matches_no_type() -> None:
    config = sam_config("vit_b")
    config.vision_config.window_size = 16
    assert architecture(config) != architecture(sam_config("vit_b"))
    assert model_type_of_config(config) is None
    assert model_type_of_encoder(768, 11) is None


def test_non_architecture_fields_do_not_matter() -> None:
    config = sam_config("vit_l")
    config.initializer_range = 0.5
    config.vision_config.attention_dropout = 0.1
    assert model_type_of_config(config) == "vit_l"
