"""Inject adapters into a model by module-name regex (peft style).

Works on transformers' `SamModel` and on the official `segment_anything` `Sam` alike: only the
names of the targeted Linear layers matter.
"""

from __future__ import annotations

import functools

from torch import nn

from garasam.adapters.config import AdapterConfig, FullFinetuneConfig
from garasam.adapters.inspect import _CONFIG_ATTR, adapter_config, find_targets, finetuned_parameters
from garasam.adapters.layers import make_adapter
from garasam.adapters.save import save_pretrained
from garasam.errors import ConfigError


def inject_adapters(model: nn.Module, config: AdapterConfig) -> nn.Module:
    """Freeze every parameter of `model` and wrap each targeted Linear in an adapter, in place.

    Returns the same model, whose adapter and gate parameters are the only trainable ones.
    """
    if adapter_config(model) is not None:
        raise ConfigError("this model already has adapters; build a fresh model to inject others")
    targets = find_targets(model, config.target_modules)
    for param in model.parameters():
        param.requires_grad_(False)
    setattr(model, _CONFIG_ATTR, config)
    if isinstance(config, FullFinetuneConfig):
        for param in finetuned_parameters(model, config).values():
            param.requires_grad_(True)
        return model
    grid = encoder_grid(model)
    hiera = hiera_grids(model)
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = make_adapter(linear, config).train(linear.training)
        block = _block_of(model, name)
        window = getattr(block, "window_size", None)
        block_grid = hiera.get(id(block), grid)  # Hiera: the grid of this block's input
        if block_grid is not None and isinstance(window, int):
            layer.token_grid = (block_grid[0], window, block_grid[1])
        setattr(parent, child, layer)
    if hasattr(model, "save_pretrained"):  # transformers would write qkv.base.* keys no SAM loader reads
        model.save_pretrained = functools.partial(_save_pretrained, model)
    return model


def encoder_grid(model: nn.Module) -> tuple[int, int] | None:
    """(patch grid side, patch size) of a SAM image encoder: transformers' or the official one."""
    for config in (
        getattr(getattr(model, "config", None), "vision_config", None),
        getattr(getattr(model, "vision_encoder", None), "config", None),
    ):
        if config is not None and hasattr(config, "image_size") and hasattr(config, "patch_size"):
            return int(config.image_size) // int(config.patch_size), int(config.patch_size)
    encoder = getattr(model, "image_encoder", None)
    if encoder is not None and hasattr(encoder, "img_size") and hasattr(encoder, "patch_embed"):
        patch = int(encoder.patch_embed.proj.kernel_size[0])
        return int(encoder.img_size) // patch, patch
    return None


def hiera_grids(model: nn.Module) -> dict[int, tuple[int, int]]:
    """SAM 2's Hiera blocks -> (side of the token grid the block's qkv reads, pixels per token); empty
    for other encoders. The grid halves after each block that pools its queries (the first block of
    stages 2-4), whose own qkv still reads the finer grid."""
    backbone = getattr(getattr(model, "vision_encoder", None), "backbone", None)
    config = getattr(backbone, "config", None)
    if backbone is None or not hasattr(config, "patch_stride"):
        return {}
    side = int(config.image_size[0])
    grid = side // int(config.patch_stride[0])
    grids = {}
    for block in backbone.blocks:
        grids[id(block)] = (grid, side // grid)
        if getattr(block, "query_stride", None):
            grid //= int(block.query_stride[0])
    return grids


def _block_of(model: nn.Module, name: str) -> nn.Module | None:
    """The encoder block a `...blocks.N.attn.qkv` layer sits in (two levels up), if any."""
    parts = name.split(".")
    return model.get_submodule(".".join(parts[:-2])) if len(parts) > 2 else None


def _save_pretrained(model: nn.Module, directory: str, *args: object, **kwargs: object) -> object:
    """An adapted SAM saves as a GaraSam folder: adapters + a reference to its base checkpoint."""
    if args or kwargs:
        raise ConfigError(f"an adapted SAM saves with save_pretrained(directory) only, got {args} {kwargs}")
    return save_pretrained(model, directory)
