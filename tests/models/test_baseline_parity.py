"""Official HQ-SAM and RobustSAM checkpoints loaded by build_sam compute what the released packages
compute (random weights, `tiny` numbers, saved as the official `.pth` files are)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from garasam.models import build_sam
from garasam.models.features import decode, encode_images
from tests.models.test_official_parity import PROMPTS, TOLERANCE, _normalise
from tests.official_baselines import official_tiny_hq, official_tiny_robust
from tests.official_sam import TINY

OFFICIAL = {"hq_tiny": official_tiny_hq, "robust_tiny": official_tiny_robust}
# RobustSAM's random logits reach a few hundred (its feature paths add up); float32 rounding grows with them
RELATIVE = 1e-5

pytestmark = pytest.mark.filterwarnings("ignore:input's size at dim=0 does not match num_features")


def _max_diff(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest difference, with the tolerance's relative part moved to the left-hand side."""
    return (actual - expected).abs().max().item() - RELATIVE * expected.abs().max().item()


@pytest.fixture(scope="module", params=sorted(OFFICIAL))
def pair(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, object, Path]:
    """(model type, official model, its state dict saved with torch.save like the released files)."""
    torch.manual_seed(0)
    official = OFFICIAL[request.param]()
    path = tmp_path_factory.mktemp(request.param) / f"{request.param}.pth"
    torch.save(official.state_dict(), path)
    return request.param, official, path


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return (
        torch.rand(3, TINY["image_size"], TINY["image_size"], generator=torch.Generator().manual_seed(1))
        * 255
    )


def _official(
    model_type: str, official: object, image: torch.Tensor, args: dict, multimask: bool, **kw
) -> dict:
    """Low-res logits and IoU of the official forward for one image and one prompt."""
    record = {"image": image, "original_size": image.shape[1:], **args}
    with torch.no_grad():
        if model_type == "hq_tiny":
            return official([record], multimask, **kw)[0]
        # RobustSAM's inference entry point: the robust tokens, one image per call
        return official.predict(None, [{**record, "image": image[None]}], multimask)[0]


def test_image_embeddings_and_early_features_match(pair: tuple, image: torch.Tensor) -> None:
    model_type, official, path = pair
    ours = build_sam(model_type, path)
    with torch.no_grad():
        expected, interm = official.image_encoder(official.preprocess(image[None]))
        features = encode_images(ours, _normalise(image))
    assert (features.embeddings - expected).abs().max().item() < TOLERANCE
    assert len(features.intermediate) == 1  # the first global block, the one both decoders read
    assert (features.intermediate[0] - interm[0]).abs().max().item() < TOLERANCE


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("with_mask", [False, True], ids=["no-mask", "mask-input"])
@pytest.mark.parametrize("prompt", sorted(PROMPTS))
def test_masks_and_scores_match(
    pair: tuple, image: torch.Tensor, prompt: str, with_mask: bool, multimask: bool
) -> None:
    model_type, official, path = pair
    official_args, our_args = PROMPTS[prompt]
    if with_mask:
        mask = torch.randn(1, 1, 64, 64)
        official_args = {**official_args, "mask_inputs": mask}
        our_args = {**our_args, "input_masks": mask}
    ours = build_sam(model_type, path)
    expected = _official(model_type, official, image, official_args, multimask)
    with torch.no_grad():
        actual = decode(ours, encode_images(ours, _normalise(image)), multimask_output=multimask, **our_args)
    logits, scores = actual.pred_masks[0, 0], actual.iou_scores[0, 0]
    want_logits, want_scores = expected["low_res_logits"][0], expected["iou_predictions"][0]
    if model_type == "hq_tiny" and multimask:
        # official HQ-SAM returns the best-scored of the three (plus the HQ mask); ours all three, best first
        logits, scores = logits[:1], scores[:1]
    if model_type == "robust_tiny" and multimask:
        # official RobustSAM returns 15 masks beside 3 scores; the first three are the ones the scores are for
        want_logits = want_logits[:3]
    assert logits.shape == want_logits.shape
    mask_diff = _max_diff(logits, want_logits)
    score_diff = _max_diff(scores, want_scores)
    print(f"{model_type} {prompt} mask={with_mask} multimask={multimask}: {mask_diff:.2e} {score_diff:.2e}")
    assert mask_diff < TOLERANCE
    assert score_diff < TOLERANCE


def test_hq_token_only_matches(tmp_path: Path, image: torch.Tensor) -> None:
    """HQ-SAM's option to return the HQ token's mask alone (its default adds SAM's mask to it)."""
    torch.manual_seed(0)
    official = official_tiny_hq()
    torch.save(official.state_dict(), tmp_path / "hq.pth")
    ours = build_sam("hq_tiny", tmp_path / "hq.pth")
    official_args, our_args = PROMPTS["box"]
    expected = _official("hq_tiny", official, image, official_args, False, hq_token_only=True)
    with torch.no_grad():
        features = encode_images(ours, _normalise(image))
        actual = decode(ours, features, multimask_output=False, hq_token_only=True, **our_args)
        default = decode(ours, features, multimask_output=False, **our_args)
    assert _max_diff(actual.pred_masks[0, 0], expected["low_res_logits"][0]) < TOLERANCE
    assert _max_diff(default.pred_masks[0, 0], expected["low_res_logits"][0]) > 10 * TOLERANCE


# (model type, two keys of the same shape in the official layout) whose swap the comparison must see
SWAPS = [
    (
        "hq_tiny",
        "mask_decoder.hf_mlp.layers.0.weight",
        "mask_decoder.output_hypernetworks_mlps.0.layers.0.weight",
    ),
    ("hq_tiny", "mask_decoder.embedding_encoder.0.weight", "mask_decoder.output_upscaling.0.weight"),
    (
        "robust_tiny",
        "mask_decoder.fourier_mask_features.dnc_block_combined.SEMBlock.maxpool_conv.0.conv1.weight",
        "mask_decoder.fourier_mask_features.dnc_block_combined.SEMBlock.maxpool_conv.0.conv2.weight",
    ),
    (
        "robust_tiny",
        "mask_decoder.fourier_first_layer_features.dnc_block_combined.SEMBlock.maxpool_conv.0.selector.att_conv1.weight",
        "mask_decoder.fourier_first_layer_features.dnc_block_combined.SEMBlock.maxpool_conv.0.selector.att_conv2.weight",
    ),
    ("robust_tiny", "mask_decoder.custom_robust_token.weight", "mask_decoder.mask_tokens.weight"),
]


@pytest.mark.parametrize(("model_type", "first", "second"), SWAPS)
def test_parity_check_sees_a_swapped_key(
    tmp_path: Path, image: torch.Tensor, model_type: str, first: str, second: str
) -> None:
    """The comparison catches a mis-mapped key among each family's own decoder parts."""
    torch.manual_seed(0)
    official = OFFICIAL[model_type]()
    state = official.state_dict()
    state[first], state[second] = state[second], state[first]
    torch.save(state, tmp_path / "swapped.pth")
    ours = build_sam(model_type, tmp_path / "swapped.pth")
    official_args, our_args = PROMPTS["box"]
    expected = _official(model_type, official, image, official_args, False)
    with torch.no_grad():
        actual = decode(ours, encode_images(ours, _normalise(image)), multimask_output=False, **our_args)
    assert _max_diff(actual.pred_masks[0, 0], expected["low_res_logits"][0]) > 10 * TOLERANCE
