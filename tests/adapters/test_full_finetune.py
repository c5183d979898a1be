"""Full fine-tuning of the image encoder (the miniature study's upper bound) through the adapter API."""

from __future__ import annotations

import copy

import pytest
import torch

from garasam.adapters import (
    FullFinetuneConfig,
    adapter_state_dict,
    inject_adapters,
    load_adapters,
    save_adapters,
    trainable_parameters,
)
from garasam.errors import ConfigError
from garasam.train.config import load_config


def test_only_the_image_encoder_trains(tiny_sam) -> None:
    inject_adapters(tiny_sam, FullFinetuneConfig())
    trainable = {n for n, p in tiny_sam.named_parameters() if p.requires_grad}
    encoder = {n for n, _ in tiny_sam.named_parameters() if n.startswith("vision_encoder.")}
    assert trainable == encoder and trainable
    report = trainable_parameters(tiny_sam)
    assert report.trainable == sum(p.numel() for n, p in tiny_sam.named_parameters() if n in encoder)
    assert set(adapter_state_dict(tiny_sam)) == encoder


def test_save_load_round_trip_restores_the_fine_tuned_encoder(tiny_sam, sam_inputs, tmp_path) -> None:
    original = copy.deepcopy(tiny_sam)
    inject_adapters(tiny_sam, FullFinetuneConfig())
    with torch.no_grad():
        tiny_sam.vision_encoder.layers[0].attn.qkv.weight.add_(0.05)
        tiny_sam.vision_encoder.neck.conv1.weight.mul_(1.1)
    save_adapters(tiny_sam, tmp_path / "ft")
    restored = load_adapters(original, tmp_path / "ft")
    with torch.no_grad():
        want = tiny_sam(**sam_inputs).pred_masks
        got = restored(**sam_inputs).pred_masks
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not any(p.requires_grad for p in restored.parameters())  # loaded for inference


def test_a_regex_matching_nothing_is_refused(tiny_sam) -> None:
    with pytest.raises(ConfigError, match="matches no parameter"):
        inject_adapters(tiny_sam, FullFinetuneConfig(trainable=r"^no_such_module\."))


def test_training_config_accepts_it() -> None:
    config = load_config(None, ["adapter.adapter_type=full_finetune", "model.model_type=tiny"])
    assert isinstance(config.adapter_config(), FullFinetuneConfig)
    with pytest.raises(ConfigError, match="rank"):
        load_config(None, ["adapter.adapter_type=full_finetune", "adapter.rank=4"])


def test_the_fast_encoder_is_never_applied_to_a_trained_encoder(tiny_sam) -> None:
    from garasam.train.setup import apply_fast_encoder

    inject_adapters(tiny_sam, FullFinetuneConfig())
    with pytest.raises(ConfigError, match="full fine-tuning"):
        apply_fast_encoder(tiny_sam, True, "auto")
    apply_fast_encoder(tiny_sam, None, "auto")  # the CUDA default: silently left alone
    assert all(p.dtype == torch.float32 for p in tiny_sam.parameters())
