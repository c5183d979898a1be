"""Adapters off again (issue 20, item 2): LoRA merged exactly, any adapter switched off for a block,
and whole-model saving of an adapted SAM refused with what to do instead."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from garasam.adapters import (
    GaRAConfig,
    LoRAConfig,
    MoELoRAConfig,
    adapter_config,
    disable_adapters,
    inject_adapters,
    merge_and_unload,
)
from garasam.errors import ConfigError
from garasam.models import build_sam, save_sam
from tests.adapters.conftest import randomize_b
from tests.conftest import embeddings


@pytest.fixture
def sam():
    return build_sam("tiny")  # the bundled weights: image embeddings that depend on the image


def test_merged_lora_computes_what_the_adapters_did(sam, pixels, tmp_path) -> None:
    inject_adapters(sam, LoRAConfig(rank=4, scale=0.5))
    randomize_b(sam)
    adapted = embeddings(sam, pixels)
    merge_and_unload(sam)
    assert adapter_config(sam) is None
    assert all(type(m) is nn.Linear for n, m in sam.named_modules() if n.endswith("attn.qkv"))
    # W + sBA rounds differently from Wx + s(B(Ax)) in float32: 1.6e-6 apart on some CPUs (AMD EPYC),
    # against embeddings that move by ~1e-1 when the merge is wrong
    torch.testing.assert_close(embeddings(sam, pixels), adapted, rtol=1e-5, atol=1e-5)
    # a merged model is a plain SAM: saved and read back whole
    save_sam(sam, tmp_path / "merged.safetensors")
    reloaded = build_sam("tiny", tmp_path / "merged.safetensors")
    torch.testing.assert_close(embeddings(reloaded, pixels), embeddings(sam, pixels), rtol=0, atol=0)


@pytest.mark.parametrize("config", [GaRAConfig(r_low=2, r_high=4), MoELoRAConfig(expert_ranks=(2, 4))])
def test_gated_adapters_cannot_be_merged(sam, config) -> None:
    inject_adapters(sam, config)
    with pytest.raises(ConfigError, match="cannot be merged: their gates choose components per input"):
        merge_and_unload(sam)
    assert adapter_config(sam) == config  # nothing was changed


@pytest.mark.parametrize("config", [LoRAConfig(rank=4), GaRAConfig(r_low=2, r_high=4)])
def test_disabled_adapters_compute_the_frozen_model(sam, pixels, config) -> None:
    frozen = embeddings(sam, pixels)
    inject_adapters(sam, config)
    randomize_b(sam)
    adapted = embeddings(sam, pixels)
    assert not torch.allclose(adapted, frozen)
    with disable_adapters(sam):
        torch.testing.assert_close(embeddings(sam, pixels), frozen, rtol=0, atol=0)
    torch.testing.assert_close(embeddings(sam, pixels), adapted, rtol=0, atol=0)
    with pytest.raises(RuntimeError), disable_adapters(sam):
        raise RuntimeError("inside the block")
    torch.testing.assert_close(embeddings(sam, pixels), adapted, rtol=0, atol=0)


def test_disable_needs_adapters(sam) -> None:
    with pytest.raises(ConfigError, match="no adapters to disable"), disable_adapters(sam):
        pass
    with pytest.raises(ConfigError, match="no adapters to merge"):
        merge_and_unload(sam)


def test_an_adapted_model_is_not_saved_whole(sam, tmp_path) -> None:
    """It used to save, and then neither build_sam nor SamModel.from_pretrained read the qkv weights."""
    inject_adapters(sam, GaRAConfig(r_low=2, r_high=4))
    with pytest.raises(ConfigError, match="model.save_pretrained.*garasam.save_adapters.*merge_and_unload"):
        save_sam(sam, tmp_path / "whole.safetensors")
    assert not (tmp_path / "whole.safetensors").exists()


def test_an_adapted_model_saves_and_loads_in_one_call_each(sam, pixels, tmp_path) -> None:
    """save_pretrained of an adapted SAM writes adapters whose config refers to its base: it round-trips
    (issue 28: the separate garasam.json repeated what adapter_config.json records, and is gone)."""
    from garasam import GaraSam

    inject_adapters(sam, GaRAConfig(r_low=2, r_high=4))
    randomize_b(sam)
    sam.save_pretrained(tmp_path / "gara")
    assert sorted(p.name for p in (tmp_path / "gara").iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    again = GaraSam.from_pretrained(tmp_path / "gara")
    torch.testing.assert_close(embeddings(again, pixels), embeddings(sam, pixels), rtol=0, atol=0)


def test_a_random_base_cannot_be_referred_to(tmp_path) -> None:
    from garasam import GaraSam

    model = inject_adapters(build_sam("tiny", pretrained=False), LoRAConfig(rank=2))
    with pytest.raises(ConfigError, match="not built from a checkpoint"):
        GaraSam.save_pretrained(model, tmp_path / "x")
