"""Taking adapters off a model: switch them off for a while, fold LoRA into the weights, or remove them.

GaRA and MoE-LoRA cannot be merged: their gates choose components per input (per window), so no
single weight matrix computes what they compute.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from garasam.adapters.config import FullFinetuneConfig, LoRAConfig
from garasam.adapters.inspect import _CONFIG_ATTR, adapter_config, adapter_layers
from garasam.errors import ConfigError


def remove_adapters(model: nn.Module) -> nn.Module:
    """Undo `inject_adapters`: every adapter layer gives its original Linear back and the model forgets
    its adapter config. Parameters stay frozen (the caller knows what should train)."""
    for name, layer in adapter_layers(model).items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.base)
    for attribute in (_CONFIG_ATTR, "save_pretrained"):
        if attribute in vars(model):
            delattr(model, attribute)
    return model


@contextmanager
def disable_adapters(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block the model computes exactly as the frozen SAM (each adapter layer runs its base
    Linear only); the adapters come back on leaving it, also after an exception."""
    config = adapter_config(model)
    if config is None:
        raise ConfigError("this model has no adapters to disable")
    if isinstance(config, FullFinetuneConfig):
        raise ConfigError("full fine-tuning changed the weights themselves: there is no adapter to disable")
    layers = list(adapter_layers(model).values())
    for layer in layers:
        layer.disabled = True
    try:
        yield model
    finally:
        for layer in layers:
            layer.disabled = False


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Fold LoRA into the frozen weights, `W0 + scale * B A` (computed in float64, then cast), and remove
    the adapters: the result is a plain SAM that `save_sam` writes and `build_sam` reads back."""
    config = adapter_config(model)
    if config is None:
        raise ConfigError("this model has no adapters to merge")
    if not isinstance(config, LoRAConfig):
        raise ConfigError(
            f"{config.adapter_type} adapters cannot be merged: "
            + (
                "their gates choose components per input, so no single weight matrix computes them; "
                "keep them as an adapter folder (save_adapters)"
                if config.adapter_type != "full_finetune"
                else "full fine-tuning already changed the weights; save the model with save_sam"
            )
        )
    with torch.no_grad():
        for layer in adapter_layers(model).values():
            update = layer.scale * (layer.lora_B.double() @ layer.lora_A.double())
            layer.base.weight.copy_((layer.base.weight.double() + update).to(layer.base.weight.dtype))
    return remove_adapters(model)
