"""build_sam: architecture per model type, reproducible random init, dtype, the bundled tiny weights."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from transformers import SamModel

from garasam.errors import ConfigError
from garasam.models import MODEL_TYPES, build, build_sam, identify_checkpoint, save_sam


def test_vit_b_architecture() -> None:
    model = build_sam("vit_b")
    vision = model.config.vision_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads) == (768, 12, 12)
    assert list(vision.global_attn_indexes) == [2, 5, 8, 11]
    assert (vision.image_size, vision.window_size, vision.output_channels) == (1024, 14, 256)
    assert len(model.vision_encoder.layers) == 12
    assert model.vision_encoder.layers[0].attn.qkv.weight.shape == (3 * 768, 768)
    windows = [layer.window_size for layer in model.vision_encoder.layers]
    assert windows == [0 if i in (2, 5, 8, 11) else 14 for i in range(12)]  # 0 = global attention
    assert model.vision_encoder.layers[2].attn.rel_pos_h.shape == (2 * 64 - 1, 64)
    assert model.vision_encoder.layers[0].attn.rel_pos_h.shape == (2 * 14 - 1, 64)
    assert model.mask_decoder.iou_prediction_head.proj_in.weight.shape == (256, 256)
    # the official vit_b's 93,735,472 parameters plus its random Fourier matrix (a buffer there)
    assert sum(p.numel() for p in model.parameters()) == 93_735_472 + 2 * 128


def _weights(model: SamModel) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("model_type", ["tiny", "vit_b"])
def test_seeded_random_init_is_reproducible(model_type: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "TINY_WEIGHTS", Path("/nonexistent/tiny_sam.safetensors"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(7)
        first = _weights(build_sam(model_type))
        torch.manual_seed(7)
        second = _weights(build_sam(model_type))
        torch.manual_seed(8)
        third = _weights(build_sam(model_type))
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(torch.equal(a, c) for a, c in zip(first, third, strict=True))


def test_random_init_does_not_depend_on_the_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "TINY_WEIGHTS", Path("/nonexistent/tiny_sam.safetensors"))
    threads = torch.get_num_threads()
    weights = []
    try:
        for count in (1, 3):
            torch.set_num_threads(count)
            torch.manual_seed(5)
            with pytest.warns(UserWarning):
                weights.append(_weights(build_sam("tiny")))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(*weights, strict=True))


def test_random_init_follows_transformers_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "TINY_WEIGHTS", Path("/nonexistent/tiny_sam.safetensors"))
    with pytest.warns(UserWarning, match="bundled tiny SAM weights .* are missing"):
        model = build_sam("tiny")
    assert not model.training
    tensors = [*model.parameters(), *model.buffers()]
    assert all(t.device.type == "cpu" and torch.isfinite(t).all() for t in tensors)  # nothing left on meta
    qkv = model.vision_encoder.layers[0].attn.qkv
    assert qkv.weight.std().item() == pytest.approx(model.config.initializer_range, rel=0.05)
    assert torch.count_nonzero(qkv.bias) == 0
    assert torch.equal(model.vision_encoder.layers[0].layer_norm1.weight, torch.ones(160))
    assert torch.count_nonzero(model.vision_encoder.pos_embed) == 0
    embedding = model.shared_image_embedding.positional_embedding
    assert embedding is model.prompt_encoder.shared_embedding.positional_embedding
    assert embedding.std().item() == pytest.approx(1.0, rel=0.3)  # SAM's random Fourier features


def test_random_model_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "TINY_WEIGHTS", Path("/nonexistent/tiny_sam.safetensors"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_sam("tiny", dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        out = model(
            pixel_values=torch.randn(1, 3, 256, 256, dtype=torch.bfloat16),
            input_boxes=torch.tensor([[[10.0, 20, 90, 120]]]),
        )
    assert out.pred_masks.shape == (1, 1, 3, 64, 64)
    assert torch.isfinite(out.pred_masks).all()


def test_tiny_loads_the_bundled_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(build, "TINY_WEIGHTS", tmp_path / "tiny_sam.safetensors")
    with pytest.warns(UserWarning, match="missing"):
        trained = build_sam("tiny")
    save_sam(trained, tmp_path / "tiny_sam.safetensors")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = build_sam("tiny")
    assert all(torch.equal(a, b) for a, b in zip(_weights(loaded), _weights(trained), strict=True))
    assert trained.garasam_checkpoint is None
    assert loaded.garasam_checkpoint == {
        **identify_checkpoint(tmp_path / "tiny_sam.safetensors"),
        "source": str((tmp_path / "tiny_sam.safetensors").resolve()),  # what GaraSam folders refer to
    }


def test_tiny_weights_path_is_inside_the_package() -> None:
    package = Path(build.__file__).parent.parent
    assert package / "assets" / "tiny_sam.safetensors" == build.TINY_WEIGHTS


def test_unknown_model_type() -> None:
    with pytest.raises(ConfigError, match="unknown SAM model type 'vit_x'"):
        build_sam("vit_x")


def test_model_types_are_exported() -> None:
    encoders = {"vit_b", "vit_l", "vit_h", "tiny"}
    sam2 = {
        "sam2.1_hiera_t",
        "sam2.1_hiera_s",
        "sam2.1_hiera_b+",
        "sam2.1_hiera_l",
        "sam2.1_mini",
        "sam2.1_tiny",
    }
    assert (
        set(MODEL_TYPES)
        == encoders | {f"hq_{e}" for e in encoders} | {f"robust_{e}" for e in encoders} | sam2
    )


def test_require_checkpoint_refuses_random_real_models_unless_asked() -> None:
    from garasam.models.build import require_checkpoint

    for model_type in ("vit_b", "vit_l", "vit_h"):
        with pytest.raises(ConfigError, match=f"model type {model_type} needs its weights"):
            require_checkpoint(model_type, None, random_weights=False)
        require_checkpoint(model_type, None, random_weights=True)
        require_checkpoint(model_type, "sam.pth", random_weights=False)
    require_checkpoint("tiny", None, random_weights=False)  # bundled weights
    for model_type, example in (
        ("hq_tiny", "sam_hq_vit_b.pth"),
        ("robust_vit_l", "robustsam_checkpoint_b.pth"),
        ("sam2.1_mini", "sam2.1_hiera_base_plus.pt"),
    ):
        with pytest.raises(ConfigError, match=f"needs its weights: .*e.g. {example}"):
            require_checkpoint(
                model_type, None, random_weights=False
            )  # no bundled HQ, Robust or SAM 2 weights
