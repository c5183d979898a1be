"""Every accepted checkpoint format loads to the same weights; every bad file gives a CheckpointError."""

from __future__ import annotations

import argparse
import hashlib
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import SamModel

from garasam.errors import CheckpointError
from garasam.models import build_sam, checkpoint, identify_checkpoint, sam_config, save_sam
from tests.official_sam import Sam, sam_model_registry


@pytest.fixture
def reference(meta_pth: Path) -> SamModel:
    """Our tiny SAM holding the official model's weights (their parity is test_official_parity.py)."""
    return build_sam("tiny", meta_pth)


def _hf_state(model: SamModel) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


def _meta_pth_with_pixel_stats(official: Sam, model: SamModel, path: Path) -> Path:
    state = {**official.state_dict(), "pixel_mean": official.pixel_mean, "pixel_std": official.pixel_std}
    torch.save(state, path)
    return path


def _meta_safetensors(official: Sam, model: SamModel, path: Path) -> Path:
    save_file(official.state_dict(), path)
    return path


def _hf_plain(official: Sam, model: SamModel, path: Path) -> Path:
    torch.save(model.state_dict(), path)
    return path


def _hf_model_wrapped(official: Sam, model: SamModel, path: Path) -> Path:
    torch.save({"model": model.state_dict(), "epoch": 3, "lr": 1e-4}, path)
    return path


def _hf_state_dict_wrapped(official: Sam, model: SamModel, path: Path) -> Path:
    torch.save({"state_dict": model.state_dict()}, path)
    return path


def _hf_ddp_prefix(official: Sam, model: SamModel, path: Path) -> Path:
    torch.save({f"module.{key}": value for key, value in model.state_dict().items()}, path)
    return path


def _hf_safetensors(official: Sam, model: SamModel, path: Path) -> Path:
    save_sam(model, path)
    return path


def _hf_folder(official: Sam, model: SamModel, path: Path) -> Path:
    model.save_pretrained(path)
    assert (path / "model.safetensors").is_file()
    return path


def _hf_folder_bin(official: Sam, model: SamModel, path: Path) -> Path:
    model.config.save_pretrained(path)
    torch.save(model.state_dict(), path / "pytorch_model.bin")
    return path


WRITERS: dict[str, Callable[[Sam, SamModel, Path], Path]] = {
    "meta_pth_with_pixel_stats": _meta_pth_with_pixel_stats,
    "meta_safetensors": _meta_safetensors,
    "hf_plain": _hf_plain,
    "hf_model_wrapped": _hf_model_wrapped,
    "hf_state_dict_wrapped": _hf_state_dict_wrapped,
    "hf_ddp_prefix": _hf_ddp_prefix,
    "hf_safetensors": _hf_safetensors,
    "hf_folder": _hf_folder,
    "hf_folder_bin": _hf_folder_bin,
}


def _assert_same_weights(model: SamModel, reference: SamModel) -> None:
    state, expected = model.state_dict(), reference.state_dict()
    assert state.keys() == expected.keys()
    for key, value in expected.items():
        assert state[key].dtype == torch.float32, key
        assert torch.equal(state[key], value), key


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_every_format_loads_the_same_weights(
    writer: str, official_sam: Sam, reference: SamModel, tmp_path: Path
) -> None:
    path = WRITERS[writer](official_sam, reference, tmp_path / f"{writer}.ckpt")
    model = build_sam("tiny", path)
    assert not model.training
    _assert_same_weights(model, reference)
    embedding = model.prompt_encoder.shared_embedding.positional_embedding
    assert embedding is model.shared_image_embedding.positional_embedding  # tied, as transformers does


def test_meta_checkpoint_matches_official_tensors(official_sam: Sam, reference: SamModel) -> None:
    """Spot checks of the key renaming, tensor by tensor (the parity tests check all of it numerically)."""
    official, ours = official_sam.state_dict(), reference.state_dict()
    pairs = {
        "image_encoder.patch_embed.proj.weight": "vision_encoder.patch_embed.projection.weight",
        "image_encoder.blocks.3.norm2.bias": "vision_encoder.layers.3.layer_norm2.bias",
        "image_encoder.neck.3.weight": "vision_encoder.neck.layer_norm2.weight",
        "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": "shared_image_embedding.positional_embedding",
        "prompt_encoder.mask_downscaling.6.weight": "prompt_encoder.mask_embed.conv3.weight",
        "prompt_encoder.point_embeddings.2.weight": "prompt_encoder.point_embed.2.weight",
        "mask_decoder.output_upscaling.1.bias": "mask_decoder.upscale_layer_norm.bias",
        "mask_decoder.iou_prediction_head.layers.1.weight": "mask_decoder.iou_prediction_head.layers.0.weight",
        "mask_decoder.output_hypernetworks_mlps.2.layers.2.weight": "mask_decoder.output_hypernetworks_mlps.2.proj_out.weight",
        "mask_decoder.transformer.norm_final_attn.weight": "mask_decoder.transformer.layer_norm_final_attn.weight",
    }
    for meta_key, hf_key in pairs.items():
        assert torch.equal(official[meta_key], ours[hf_key]), meta_key


@pytest.mark.parametrize("model_type", ["vit_b", "vit_l", "vit_h"])
def test_meta_layout_of_the_released_models_converts(model_type: str) -> None:
    """Every key of the official vit_b/l/h maps onto our model with the right shape (on the meta
    device: no memory, no weights; a real forward pass of these sizes is too slow for CPU tests)."""
    with torch.device("meta"):
        official = sam_model_registry[model_type]()
        ours = SamModel(sam_config(model_type))
    state = checkpoint._to_hf_layout(dict(official.state_dict()))
    checkpoint._check_state_dict(state, ours.state_dict(), model_type, Path(f"sam_{model_type}.pth"))


def test_half_precision_file_loads_as_float32_unless_asked(reference: SamModel, tmp_path: Path) -> None:
    path = tmp_path / "half.safetensors"
    save_file({key: value.half().contiguous() for key, value in _hf_state(reference).items()}, path)
    model = build_sam("tiny", path)
    weight = model.vision_encoder.layers[0].attn.qkv.weight
    assert weight.dtype == torch.float32
    assert torch.equal(weight, reference.vision_encoder.layers[0].attn.qkv.weight.half().float())
    assert build_sam("tiny", path, dtype=torch.bfloat16).vision_encoder.layers[0].attn.qkv.weight.dtype == (
        torch.bfloat16
    )


# --- bad checkpoints -------------------------------------------------------------------------


def _raises(path: Path, model_type: str = "tiny") -> str:
    with pytest.raises(CheckpointError) as info:
        build_sam(model_type, path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_missing_keys_are_listed(reference: SamModel, tmp_path: Path) -> None:
    state = _hf_state(reference)
    del state["mask_decoder.iou_token.weight"]
    torch.save(state, tmp_path / "missing.pth")
    message = _raises(tmp_path / "missing.pth")
    assert "1 missing keys" in message and "mask_decoder.iou_token.weight" in message


def test_missing_keys_of_a_meta_file_are_named_after_conversion(official_sam: Sam, tmp_path: Path) -> None:
    state = official_sam.state_dict()
    del state["image_encoder.neck.0.weight"]
    torch.save(state, tmp_path / "missing_meta.pth")
    assert "vision_encoder.neck.conv1.weight" in _raises(tmp_path / "missing_meta.pth")


def test_unexpected_keys_are_listed(reference: SamModel, tmp_path: Path) -> None:
    state = _hf_state(reference)
    state["mask_decoder.adapter.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "unexpected.pth")
    message = _raises(tmp_path / "unexpected.pth")
    assert "1 unexpected keys" in message and "mask_decoder.adapter.weight" in message


def test_many_bad_keys_are_summarised(reference: SamModel, tmp_path: Path) -> None:
    state = {f"extra.{i}": torch.zeros(1) for i in range(20)}
    torch.save({**_hf_state(reference), **state}, tmp_path / "many.pth")
    assert "20 unexpected keys" in (message := _raises(tmp_path / "many.pth")) and "15 more" in message


@pytest.mark.parametrize("model_type", ["vit_b", "vit_l", "vit_h"])
def test_wrong_model_type_names_the_files_type(meta_pth: Path, reference: SamModel, model_type: str) -> None:
    save_sam(reference, meta_pth.with_name("hf.safetensors"))
    for path in (meta_pth, meta_pth.with_name("hf.safetensors")):
        message = _raises(path, model_type)
        assert "this is a tiny checkpoint" in message and "width 160, 6 blocks" in message
        assert f"not {model_type}" in message


def test_wrong_model_type_of_a_folder_is_read_from_its_config(reference: SamModel, tmp_path: Path) -> None:
    reference.save_pretrained(tmp_path / "hf")
    with pytest.raises(CheckpointError, match="describes a tiny model, not vit_b") as info:
        build_sam("vit_b", tmp_path / "hf")
    assert str(tmp_path / "hf" / "config.json") in str(info.value)


def test_shape_mismatch_outside_the_encoder(reference: SamModel, tmp_path: Path) -> None:
    state = _hf_state(reference)
    state["mask_decoder.iou_token.weight"] = torch.zeros(1, 32)
    torch.save(state, tmp_path / "shape.pth")
    message = _raises(tmp_path / "shape.pth")
    assert "mask_decoder.iou_token.weight is (1, 32), expected (1, 64)" in message


def _write_truncated_pth(reference: SamModel, path: Path) -> None:
    torch.save(reference.state_dict(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _write_truncated_safetensors(reference: SamModel, path: Path) -> None:
    save_sam(reference, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _write_truncated_legacy_pth(reference: SamModel, path: Path) -> None:
    torch.save(reference.state_dict(), path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _write_foreign_zip(reference: SamModel, path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("weights/readme.txt", "not a checkpoint")


def _write_pickle_needing_code(reference: SamModel, path: Path) -> None:
    torch.save({"model": reference.state_dict(), "args": argparse.Namespace(lr=1e-4)}, path)


BAD_FILES: dict[str, tuple[Callable[[SamModel, Path], None], str]] = {
    "truncated_pth": (_write_truncated_pth, "truncated or corrupt"),
    "truncated_legacy_pth": (_write_truncated_legacy_pth, "truncated or corrupt"),
    "truncated_safetensors": (_write_truncated_safetensors, "truncated or corrupt"),
    "text": (
        lambda _, path: path.write_text("model weights go here\n"),
        "neither a PyTorch nor a safetensors",
    ),
    "lfs_pointer": (
        lambda _, path: path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\n"),
        "git lfs pull",
    ),
    "empty": (lambda _, path: path.write_bytes(b""), "the file is empty"),
    "foreign_zip": (_write_foreign_zip, "not a PyTorch checkpoint"),
    "pickle_needing_code": (_write_pickle_needing_code, "weights_only=False"),
    "tensor_list": (lambda ref, path: torch.save([torch.zeros(2)], path), "holds a list, not a state dict"),
    "no_tensors": (
        lambda _, path: torch.save({"epoch": 3}, path),
        "entry 'epoch' is of type int, not a tensor",
    ),
    "empty_dict": (lambda _, path: torch.save({}, path), "holds no tensors"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_unreadable_files(case: str, reference: SamModel, tmp_path: Path) -> None:
    write, expected = BAD_FILES[case]
    path = tmp_path / f"{case}.pth"
    write(reference, path)
    assert expected in _raises(path)


def test_non_existent_path(tmp_path: Path) -> None:
    assert "no such checkpoint file" in _raises(tmp_path / "sam_vit_b_01ec64.pth")


def test_folder_without_config(tmp_path: Path) -> None:
    assert "without config.json" in _raises(tmp_path)


def test_folder_without_weights(tmp_path: Path) -> None:
    sam_config("tiny").save_pretrained(tmp_path)
    assert "no weights file" in _raises(tmp_path)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("{not json", "unreadable"),
        (json.dumps({"model_type": "bert", "hidden_size": 768}), "describes a 'bert' model, not SAM"),
        (json.dumps({"model_type": "sam", "vision_config": [1, 2]}), "not a valid SAM config"),
    ],
)
def test_folder_with_bad_config(tmp_path: Path, config: str, expected: str) -> None:
    (tmp_path / "config.json").write_text(config)
    assert expected in _raises(tmp_path)


# --- writing and identifying -----------------------------------------------------------------


def test_save_sam_records_the_model_type_and_replaces_atomically(reference: SamModel, tmp_path: Path) -> None:
    path = tmp_path / "out" / "sam.safetensors"
    path.parent.mkdir()
    path.write_text("an older file")
    save_sam(reference, path)
    with safe_open(path, "pt") as handle:
        assert handle.metadata()["garasam_model_type"] == "tiny"
    assert [p.name for p in path.parent.iterdir()] == ["sam.safetensors"]  # no temp file left
    _assert_same_weights(build_sam("tiny", path), reference)


def test_save_sam_refuses_an_unknown_architecture(tmp_path: Path) -> None:
    config = sam_config("tiny")
    config.mask_decoder_config.mlp_dim = 128
    with torch.device("meta"):
        model = SamModel(config)
    with pytest.raises(ValueError, match="matches none of the model types"):
        save_sam(model, tmp_path / "custom.safetensors")
    assert not list(tmp_path.iterdir())


def test_identify_checkpoint(meta_pth: Path, reference: SamModel, tmp_path: Path) -> None:
    identity = identify_checkpoint(meta_pth)
    data = meta_pth.read_bytes()
    assert identity == {
        "name": meta_pth.name,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest()[:16],
    }
    reference.save_pretrained(tmp_path / "hf")
    folder = identify_checkpoint(tmp_path / "hf")
    weights = (tmp_path / "hf" / "model.safetensors").read_bytes()
    assert folder == {"name": "hf", "size": len(weights), "sha256": hashlib.sha256(weights).hexdigest()[:16]}
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        identify_checkpoint(tmp_path / "missing.pth")
