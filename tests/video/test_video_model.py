"""SAM 2.1 in video mode: Meta's `.pt` files load whole into transformers' `Sam2VideoModel` (the
memory modules kept), image-mode files are refused by name, and every released layout converts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import Sam2Model, Sam2VideoModel

from garasam.errors import CheckpointError, ConfigError
from garasam.models import build_sam
from garasam.models.checkpoint import _check_state_dict, _to_hf_layout, save_sam
from garasam.models.sam2_video import sam2_video_config
from tests.official_sam2 import official_mini_sam2, official_sam2


@pytest.fixture(scope="module")
def meta_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("video") / "sam2.1_mini.pt"
    torch.save({"model": official_mini_sam2(video=True).state_dict()}, path)
    return path


@pytest.mark.parametrize("size", ["t", "s", "b+", "l"])
def test_the_released_layouts_convert_whole(size: str) -> None:
    """Every key of Meta's SAM 2.1 t/s/b+/l, video modules included, maps onto Sam2VideoModel."""
    model_type = f"sam2.1_hiera_{size}"
    official = official_sam2(size)
    with torch.device("meta"):
        ours = Sam2VideoModel(sam2_video_config(model_type))
    state = _to_hf_layout({key: value.to("meta") for key, value in official.state_dict().items()}, video=True)
    _check_state_dict(state, ours.state_dict(), model_type, Path(f"{model_type}.pt"))


def test_meta_weights_land_in_the_memory_modules(meta_file: Path) -> None:
    official = torch.load(meta_file, weights_only=True)["model"]
    model = build_sam("sam2.1_mini", meta_file, video=True)
    assert isinstance(model, Sam2VideoModel)
    ours = model.state_dict()
    pairs = {
        "memory_attention.layers.0.cross_attn_image.o_proj.weight": "memory_attention.layers.0.cross_attn_image.out_proj.weight",
        "memory_encoder.memory_fuser.layers.0.scale": "memory_encoder.fuser.layers.0.gamma",
        "object_pointer_proj.proj_out.weight": "obj_ptr_proj.layers.2.weight",
        "memory_temporal_positional_encoding": "maskmem_tpos_enc",
        "occlusion_spatial_embedding_parameter": "no_obj_embed_spatial",
    }
    for key, meta_key in pairs.items():
        assert torch.equal(ours[key], official[meta_key]), key
    # the mini's memory is as wide as its features, so Meta's encoder has no output projection
    # (an Identity): transformers' 1x1 projection holds the identity
    assert torch.equal(ours["memory_encoder.projection.weight"][:, :, 0, 0], torch.eye(64))


def test_the_same_file_loads_in_image_mode_without_the_memory(meta_file: Path) -> None:
    assert isinstance(build_sam("sam2.1_mini", meta_file), Sam2Model)


def test_an_image_mode_file_is_refused_in_video_mode(meta_file: Path, tmp_path: Path) -> None:
    image_only = tmp_path / "image.safetensors"
    save_sam(build_sam("sam2.1_mini", meta_file), image_only)
    with pytest.raises(CheckpointError, match="image path only.*Meta's .pt file"):
        build_sam("sam2.1_mini", image_only, video=True)


def test_a_video_folder_loads_in_both_modes(meta_file: Path, tmp_path: Path) -> None:
    model = build_sam("sam2.1_mini", meta_file, video=True)
    model.save_pretrained(tmp_path / "video")
    again = build_sam("sam2.1_mini", tmp_path / "video", video=True)
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
    assert isinstance(build_sam("sam2.1_mini", tmp_path / "video"), Sam2Model)


def test_sam1_types_have_no_video_mode() -> None:
    with pytest.raises(ConfigError, match="no video mode"):
        build_sam("tiny", video=True)


def test_computed_buffers_are_filled() -> None:
    """Buffers no checkpoint holds (the memory attention's rotary tables) are computed, not left
    empty by the meta-device build."""
    model = build_sam("sam2.1_mini", video=True)
    with torch.device("cpu"):
        reference = Sam2VideoModel(sam2_video_config("sam2.1_mini"))
    computed = [name for name, _ in reference.named_buffers() if name not in reference.state_dict()]
    assert computed  # the rotary frequencies and positions
    for name in computed:
        assert torch.equal(dict(model.named_buffers())[name], dict(reference.named_buffers())[name]), name
