"""A Meta-format checkpoint loaded by build_sam computes what the official segment_anything computes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from garasam.models import build_sam, sam_config
from tests.official_sam import PIXEL_MEAN, PIXEL_STD, TINY, Sam

TOLERANCE = 1e-4  # float32; the measured worst case is about 3e-5 on outputs of magnitude up to 35

POINTS = torch.tensor([[[60.0, 100.0], [200.0, 30.0]]])  # one positive and one negative click
LABELS = torch.tensor([[1, 0]])
BOX = torch.tensor([[40.0, 50.0, 180.0, 220.0]])
# Prompt -> (official Sam.forward arguments, transformers SamModel arguments), in the 256 px input frame.
PROMPTS = {
    "points": (
        {"point_coords": POINTS, "point_labels": LABELS},
        {"input_points": POINTS[:, None], "input_labels": LABELS[:, None]},
    ),
    "box": ({"boxes": BOX}, {"input_boxes": BOX[:, None]}),
}


@pytest.fixture
def image() -> torch.Tensor:
    return torch.rand(3, TINY["image_size"], TINY["image_size"]) * 255


def _normalise(image: torch.Tensor) -> torch.Tensor:
    """SAM's pixel normalisation, which the official model does inside forward."""
    mean = torch.tensor(PIXEL_MEAN).view(3, 1, 1)
    std = torch.tensor(PIXEL_STD).view(3, 1, 1)
    return ((image - mean) / std)[None]


def test_tiny_config_is_the_official_architecture() -> None:
    config = sam_config("tiny")
    vision, prompt, decoder = config.vision_config, config.prompt_encoder_config, config.mask_decoder_config
    assert vision.hidden_size == TINY["embed_dim"]
    assert vision.num_hidden_layers == TINY["depth"]
    assert vision.num_attention_heads == TINY["num_heads"]
    assert tuple(vision.global_attn_indexes) == TINY["global_attn_indexes"]
    assert vision.window_size == TINY["window_size"]
    assert vision.image_size == prompt.image_size == TINY["image_size"]
    assert vision.patch_size == prompt.patch_size == TINY["patch_size"]
    assert vision.output_channels == prompt.hidden_size == decoder.hidden_size == TINY["out_chans"]
    assert vision.num_pos_feats == TINY["out_chans"] // 2
    assert vision.mlp_dim == 4 * TINY["embed_dim"]
    assert (vision.use_rel_pos, vision.use_abs_pos, vision.qkv_bias) == (True, True, True)
    assert prompt.mask_input_channels == TINY["mask_in_chans"]
    assert decoder.num_hidden_layers == TINY["decoder_depth"]
    assert decoder.mlp_dim == TINY["decoder_mlp_dim"]
    assert decoder.num_attention_heads == TINY["decoder_heads"]
    assert decoder.iou_head_depth == TINY["iou_head_depth"]
    assert decoder.iou_head_hidden_dim == TINY["iou_head_hidden_dim"]
    assert decoder.num_multimask_outputs == 3


def test_image_embeddings_match(official_sam: Sam, meta_pth: Path, image: torch.Tensor) -> None:
    ours = build_sam("tiny", meta_pth)
    with torch.no_grad():
        expected = official_sam.image_encoder(official_sam.preprocess(image[None]))
        actual = ours.get_image_embeddings(_normalise(image))
    assert actual.shape == expected.shape == (1, TINY["out_chans"], 16, 16)
    diff = (actual - expected).abs().max().item()
    print(f"image embeddings: max abs diff {diff:.2e}, max abs value {expected.abs().max().item():.2f}")
    assert diff < TOLERANCE


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("with_mask", [False, True], ids=["no-mask", "mask-input"])
@pytest.mark.parametrize("prompt", sorted(PROMPTS))
def test_masks_and_scores_match(
    official_sam: Sam, meta_pth: Path, image: torch.Tensor, prompt: str, with_mask: bool, multimask: bool
) -> None:
    official_args, our_args = PROMPTS[prompt]
    if with_mask:  # exercises the mask-downscaling weights, unused by point and box prompts
        mask = torch.randn(1, 1, 64, 64)
        official_args = {**official_args, "mask_inputs": mask}
        our_args = {**our_args, "input_masks": mask}
    ours = build_sam("tiny", meta_pth)
    expected = official_sam([{"image": image, "original_size": image.shape[1:], **official_args}], multimask)[
        0
    ]
    with torch.no_grad():
        actual = ours(pixel_values=_normalise(image), multimask_output=multimask, **our_args)
    n_masks = 3 if multimask else 1
    assert actual.pred_masks.shape == (1, 1, n_masks, 64, 64)
    assert expected["low_res_logits"].shape == (1, n_masks, 64, 64)
    mask_diff = (actual.pred_masks[0] - expected["low_res_logits"]).abs().max().item()
    score_diff = (actual.iou_scores[0] - expected["iou_predictions"]).abs().max().item()
    print(
        f"{prompt} mask={with_mask} multimask={multimask}: logits diff {mask_diff:.2e}, IoU diff {score_diff:.2e}"
    )
    assert mask_diff < TOLERANCE
    assert score_diff < TOLERANCE


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("prompt_encoder.point_embeddings.0.weight", "prompt_encoder.point_embeddings.1.weight"),
        (
            "mask_decoder.transformer.layers.1.self_attn.q_proj.weight",
            "mask_decoder.transformer.layers.1.self_attn.k_proj.weight",
        ),
    ],
)
def test_parity_check_sees_a_swapped_key(
    official_sam: Sam, tmp_path: Path, image: torch.Tensor, first: str, second: str
) -> None:
    """The comparison is sensitive enough to catch a mis-mapped key, even among the weakest ones."""
    state = official_sam.state_dict()
    state[first], state[second] = state[second], state[first]
    torch.save(state, tmp_path / "swapped.pth")
    ours = build_sam("tiny", tmp_path / "swapped.pth")
    expected = official_sam(
        [{"image": image, "original_size": image.shape[1:], **PROMPTS["points"][0]}], True
    )[0]
    with torch.no_grad():
        actual = ours(pixel_values=_normalise(image), **PROMPTS["points"][1])
    assert (actual.pred_masks[0] - expected["low_res_logits"]).abs().max().item() > 10 * TOLERANCE
