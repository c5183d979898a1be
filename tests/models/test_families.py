"""HQ-SAM, RobustSAM and SAM 2.1 as model types: building, their checkpoints and errors, the fast path,
adapters on their encoders, and what our RobustSAM does beyond the official one (prompt batches)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import SamHQModel

from garasam.adapters import GaRAConfig, inject_adapters, trainable_parameters
from garasam.errors import CheckpointError
from garasam.fast.encoder import optimize_sam
from garasam.models import build_sam, save_sam
from garasam.models.build import MODEL_CLASSES
from garasam.models.checkpoint import _check_state_dict, _to_hf_layout
from garasam.models.features import decode, encode_images
from garasam.models.hub import infer_model_type
from garasam.models.registry import family_of, sam_config
from tests.official_baselines import hq_registry, robust_registry

FAMILY_TINY = ["hq_tiny", "robust_tiny"]
NEW_TINY = [*FAMILY_TINY, "sam2.1_mini"]  # every family added after SAM, at CPU size
BOX = torch.tensor([[[30.0, 40.0, 200.0, 210.0]]])


def _box_logits(model: torch.nn.Module, pixels: torch.Tensor, **prompts: object) -> torch.Tensor:
    with torch.no_grad():
        features = encode_images(model, pixels)
        return decode(
            model, features, **({"input_boxes": BOX, "multimask_output": False} | prompts)
        ).pred_masks


@pytest.mark.parametrize("model_type", NEW_TINY)
def test_random_build_is_finite_reproducible_and_of_its_family(model_type: str, pixels: torch.Tensor) -> None:
    torch.manual_seed(5)
    first = build_sam(model_type)
    torch.manual_seed(5)
    second = build_sam(model_type)
    assert isinstance(first, MODEL_CLASSES[family_of(model_type)])
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
        if value.is_floating_point():
            assert torch.isfinite(value).all(), key
    assert torch.isfinite(_box_logits(first, pixels)).all()


@pytest.mark.parametrize("model_type", NEW_TINY)
def test_our_safetensors_round_trip(model_type: str, tmp_path: Path, pixels: torch.Tensor) -> None:
    model = build_sam(model_type)
    save_sam(model, tmp_path / "m.safetensors")
    again = build_sam(model_type, tmp_path / "m.safetensors")
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    assert torch.allclose(_box_logits(model, pixels), _box_logits(again, pixels), atol=1e-6)


@pytest.mark.parametrize(
    ("saved", "built", "expected"),
    [
        (
            "hq_tiny",
            "tiny",
            "holds HQ-SAM (it has mask_decoder.hq_token.weight), not SAM (tiny); build it as 'hq_tiny'",
        ),
        ("hq_tiny", "robust_tiny", "holds HQ-SAM"),
        (
            "robust_tiny",
            "hq_tiny",
            "holds RobustSAM (it has mask_decoder.robust_tokens.weight), not HQ-SAM",
        ),
        (
            "tiny",
            "robust_tiny",
            "holds SAM (it has no HQ-SAM, RobustSAM or SAM 2 part), not RobustSAM",
        ),
    ],
)
def test_a_checkpoint_of_another_family_is_named(
    saved: str, built: str, expected: str, tmp_path: Path
) -> None:
    path = tmp_path / f"{saved}.pth"
    torch.save(build_sam(saved).state_dict(), path)
    with pytest.raises(CheckpointError) as info:
        build_sam(built, path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)


@pytest.mark.parametrize("model_type", NEW_TINY)
@pytest.mark.parametrize("damage", ["truncated", "pickled"])
def test_damaged_files_of_the_families_get_sams_errors(model_type: str, damage: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.pth"
    state = build_sam(model_type).state_dict()
    if damage == "truncated":
        torch.save(state, path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        torch.save({"model": state, "args": Path("x")}, path)
    with pytest.raises(
        CheckpointError, match="truncated or corrupt" if damage == "truncated" else "weights_only=False"
    ):
        build_sam(model_type, path)


def test_a_hugging_face_sam_hq_folder_loads_and_is_checked(tmp_path: Path, pixels: torch.Tensor) -> None:
    model = build_sam("hq_tiny")
    SamHQModel.save_pretrained(model, tmp_path / "hq")  # what a Hub folder such as syscv-community's holds
    assert infer_model_type(tmp_path / "hq") == "hq_tiny"
    assert torch.equal(_box_logits(build_sam("hq_tiny", tmp_path / "hq"), pixels), _box_logits(model, pixels))
    with pytest.raises(CheckpointError, match="describes a hq_tiny model, not tiny"):
        build_sam("tiny", tmp_path / "hq")


@pytest.mark.parametrize(
    ("name", "model_type"),
    [
        ("sam_hq_vit_b.pth", "hq_vit_b"),
        ("sam_hq_vit_h.pth", "hq_vit_h"),
        ("robustsam_checkpoint_l.pth", "robust_vit_l"),
        ("sam_vit_b_01ec64.pth", "vit_b"),
        ("weights.pth", None),
    ],
)
def test_released_file_names_tell_the_model_type(name: str, model_type: str | None) -> None:
    assert infer_model_type(name) == model_type


@pytest.mark.parametrize("size", ["b", "l", "h"])
@pytest.mark.parametrize("family", ["hq", "robust"])
def test_the_released_full_size_layouts_convert(family: str, size: str) -> None:
    """Every key of the official ViT-B/L/H HQ-SAM and RobustSAM maps onto ours with the right shape
    (meta device: shapes only)."""
    model_type = f"{family}_vit_{size}"
    with torch.device("meta"):
        # RobustSAM's builders take the training script's options first
        official = hq_registry[f"vit_{size}"]() if family == "hq" else robust_registry[f"vit_{size}"](None)
        ours = MODEL_CLASSES[family](sam_config(model_type))
    state = _to_hf_layout(dict(official.state_dict()))
    _check_state_dict(state, ours.state_dict(), model_type, Path(f"{model_type}.pth"))


@pytest.mark.parametrize("model_type", FAMILY_TINY)
def test_fast_path_matches_the_reference(model_type: str, pixels: torch.Tensor) -> None:
    reference = build_sam(model_type)
    fast = build_sam(model_type)
    fast.load_state_dict(reference.state_dict())
    optimize_sam(fast, dtype=torch.float32)
    with torch.no_grad():
        expected, actual = encode_images(reference, pixels), encode_images(fast, pixels)
    assert (actual.embeddings - expected.embeddings).abs().max() < 1e-4
    assert (actual.intermediate[0] - expected.intermediate[0]).abs().max() < 1e-4
    reference_logits = _box_logits(reference, pixels)
    assert (_box_logits(fast, pixels) - reference_logits).abs().max() < 1e-4 * (
        1 + reference_logits.abs().max()
    )


@pytest.mark.parametrize("model_type", NEW_TINY)
def test_gara_injects_into_the_family_encoder_and_trains(model_type: str, pixels: torch.Tensor) -> None:
    model = build_sam(model_type)
    before = _box_logits(model, pixels)
    inject_adapters(model, GaRAConfig(r_low=4, r_high=16))
    assert torch.equal(_box_logits(model, pixels), before)  # zero-initialised B: the frozen model exactly
    report = trainable_parameters(model)
    assert report.low_rank > 0 and report.trainable == report.low_rank + report.gates
    masks = decode(model, encode_images(model, pixels), input_boxes=BOX, multimask_output=False).pred_masks
    masks.sum().backward()
    grads = [p.grad for name, p in model.named_parameters() if "lora_A" in name]
    assert grads and all(g is not None for g in grads)
    assert all(p.grad is None for name, p in model.named_parameters() if name.startswith("mask_decoder."))


def test_robust_decoder_takes_a_prompt_batch_as_one_call_each(pixels: torch.Tensor) -> None:
    """The official RobustSAM decoder takes one prompt per call; ours takes several, each computed
    as if alone."""
    model = build_sam("robust_tiny")
    boxes = torch.tensor([[[30.0, 40.0, 200.0, 210.0], [5.0, 5.0, 60.0, 90.0], [100.0, 20.0, 250.0, 120.0]]])
    with torch.no_grad():
        features = encode_images(model, pixels)
        batched = decode(model, features, input_boxes=boxes, multimask_output=True)
        for i in range(3):
            alone = decode(model, features, input_boxes=boxes[:, i : i + 1], multimask_output=True)
            assert torch.allclose(batched.pred_masks[:, i], alone.pred_masks[:, 0], atol=1e-4, rtol=1e-5)
            assert torch.allclose(batched.iou_scores[:, i], alone.iou_scores[:, 0], atol=1e-5)


def test_robust_decoder_is_frozen_in_training_mode(pixels: torch.Tensor) -> None:
    """Its batch norms keep the checkpoint's statistics when a trainer puts the model in train mode."""
    model = build_sam("robust_tiny")
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms
    stats = [m.running_mean.clone() for m in norms]
    expected = _box_logits(model, pixels)
    model.train()
    assert torch.equal(_box_logits(model, pixels), expected)
    assert all(torch.equal(m.running_mean, s) for m, s in zip(norms, stats, strict=True))
