import json

import pytest
import torch
from transformers import SamModel

from garasam.adapters import (
    GaRAConfig,
    LoRAConfig,
    MoELoRAConfig,
    adapter_state_dict,
    inject_adapters,
    load_adapters,
    read_adapter_config,
    save_adapters,
)
from garasam.errors import CheckpointError, ConfigError
from garasam.models.registry import sam_config
from tests.adapters.conftest import randomize_b


@pytest.mark.parametrize("config", [GaRAConfig(r_low=8), LoRAConfig(rank=4), MoELoRAConfig()], ids=str)
def test_save_load_round_trip_is_exact(tiny_sam, sam_inputs, tmp_path, config) -> None:
    base_state = {k: v.clone() for k, v in tiny_sam.state_dict().items()}
    inject_adapters(tiny_sam, config)
    randomize_b(tiny_sam)
    with torch.no_grad():
        expected = tiny_sam(**sam_inputs)
    save_adapters(tiny_sam, tmp_path / "adapters")

    fresh = SamModel(sam_config("tiny")).eval()
    fresh.load_state_dict(base_state)
    load_adapters(fresh, tmp_path / "adapters")
    saved = adapter_state_dict(tiny_sam)
    loaded = adapter_state_dict(fresh)
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    with torch.no_grad():
        out = fresh(**sam_inputs)
    assert torch.equal(out.pred_masks, expected.pred_masks)
    assert not any(p.requires_grad for p in fresh.parameters())


def test_saved_folder_holds_only_adapters_and_the_backbone_identity(tiny_sam, tmp_path) -> None:
    inject_adapters(tiny_sam, GaRAConfig())
    save_adapters(tiny_sam, tmp_path)
    meta = read_adapter_config(tmp_path)
    assert meta["adapter"]["adapter_type"] == "gara" and meta["adapter"]["r_high"] == 256
    assert meta["backbone"] == {"model_type": "tiny", "hidden_size": 160, "num_blocks": 6, "checkpoint": None}
    from safetensors.torch import load_file

    keys = load_file(str(tmp_path / "adapter_model.safetensors")).keys()
    assert keys and all(".qkv." in k and ".base." not in k for k in keys)
    assert {k.rsplit(".qkv.", 1)[1].split(".")[0] for k in keys} == {
        "lora_A",
        "lora_B",
        "space_gate",
        "component_gates",
    }


def test_trainable_load(tiny_sam, tmp_path) -> None:
    inject_adapters(tiny_sam, LoRAConfig(rank=2))
    save_adapters(tiny_sam, tmp_path)
    fresh = load_adapters(SamModel(sam_config("tiny")), tmp_path, trainable=True)
    names = {n for n, p in fresh.named_parameters() if p.requires_grad}
    assert names and all("lora_" in n for n in names)


def test_adapters_for_another_backbone_are_refused(tiny_sam, tmp_path) -> None:
    inject_adapters(tiny_sam, LoRAConfig(rank=2))
    save_adapters(tiny_sam, tmp_path)
    with torch.device("meta"):
        vit_b = SamModel(sam_config("vit_b"))
    with pytest.raises(
        CheckpointError,
        match=r"encoder width 160 in the file, 768 in this model; adapted blocks 6 in the file, 12 in this "
        r"model \(the file calls its backbone 'tiny', this model is 'vit_b'\)",
    ):
        load_adapters(vit_b, tmp_path)


def test_bad_adapter_folders_give_clear_errors(tiny_sam, tmp_path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_adapters(tiny_sam, tmp_path / "missing")
    with pytest.raises(CheckpointError, match="not an adapter folder"):
        load_adapters(tiny_sam, tmp_path)
    (tmp_path / "adapter_config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable adapter config"):
        load_adapters(tiny_sam, tmp_path)

    good = tmp_path / "good"
    source = inject_adapters(SamModel(sam_config("tiny")), LoRAConfig(rank=2))
    save_adapters(source, good)
    (good / "adapter_model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="adapter_model.safetensors"):
        load_adapters(SamModel(sam_config("tiny")), good)

    meta = json.loads((good / "adapter_config.json").read_text())
    meta["adapter"]["ranks"] = 3
    (good / "adapter_config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unknown lora adapter config key"):
        load_adapters(SamModel(sam_config("tiny")), good)


def test_save_without_adapters_is_an_error(tiny_sam, tmp_path) -> None:
    with pytest.raises(ConfigError, match="no adapters"):
        save_adapters(tiny_sam, tmp_path)
