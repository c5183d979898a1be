"""Inject adapters into a model by module-name regex, and report on them (peft style).

Works on transformers' `SamModel` and on the official `segment_anything` `Sam` alike: only the
names of the targeted Linear layers matter.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from garasam.adapters.config import AdapterConfig, FullFinetuneConfig
from garasam.adapters.layers import AdapterLinear, make_adapter
from garasam.errors import ConfigError

_CONFIG_ATTR = "garasam_adapter_config"


def find_targets(model: nn.Module, pattern: str) -> list[tuple[str, nn.Linear]]:
    """The Linear layers whose qualified name matches `pattern` (re.search), in model order."""
    regex = re.compile(pattern)
    found = [(name, module) for name, module in model.named_modules() if name and regex.search(name)]
    wrong = [name for name, module in found if not isinstance(module, nn.Linear)]
    if wrong:
        raise ConfigError(f"target_modules {pattern!r} matches modules that are not nn.Linear: {wrong[:3]}")
    if not found:
        raise ConfigError(f"target_modules {pattern!r} matches no module of {type(model).__name__}")
    return found


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


@contextlib.contextmanager
def valid_input_sizes(model: nn.Module, input_sizes: Sequence[tuple[int, int]]) -> Iterator[None]:
    """Tell the gates which tokens of each image of the next encoder call hold the image.

    `input_sizes` are the (h, w) of the resized images inside SAM's padded square input, one per
    image of the batch; a token counts when its patch holds at least one image pixel. Without this
    context only the edge windows' zero padding is left out of the gates' means.
    """
    layers = [layer for layer in adapter_layers(model).values() if layer.token_grid is not None]
    if not layers:
        yield
        return
    grid, _, patch = layers[0].token_grid
    for h, w in input_sizes:
        if not (0 < int(h) <= grid * patch and 0 < int(w) <= grid * patch):
            raise ValueError(
                f"valid_input_sizes: image size {h}x{w} does not fit the {grid * patch} x {grid * patch} input"
            )
    device = layers[0].lora_A.device
    masks: dict[tuple[int, int], torch.Tensor] = {}  # one per token grid (Hiera's stages differ)
    for layer in layers:
        grid, _, patch = layer.token_grid
        if (grid, patch) not in masks:
            rows = torch.arange(grid, device=device)
            masks[grid, patch] = torch.stack(
                [
                    (rows[:, None] < -(-int(h) // patch)) & (rows[None, :] < -(-int(w) // patch))
                    for h, w in input_sizes
                ]
            )
        layer.valid_tokens = masks[grid, patch]
    try:
        yield
    finally:
        for layer in layers:
            layer.valid_tokens = None


def _save_pretrained(model: nn.Module, directory: str, *args: object, **kwargs: object) -> object:
    """An adapted SAM saves as a GaraSam folder: adapters + a reference to its base checkpoint."""
    from garasam.pretrained import GaraSam

    if args or kwargs:
        raise ConfigError(f"an adapted SAM saves with save_pretrained(directory) only, got {args} {kwargs}")
    return GaraSam.save_pretrained(model, directory)


ADAPTED_SAVE_HINT = (
    "this SAM carries adapters, and a whole-model file of it would not load as SAM (its qkv layers are "
    "wrapped): save it with model.save_pretrained(dir) (adapters + a reference to the base checkpoint, "
    "read back by garasam.GaraSam.from_pretrained), or the adapters alone with garasam.save_adapters, or "
    "for LoRA fold them in first with garasam.adapters.merge_and_unload(model)"
)


def finetuned_parameters(model: nn.Module, config: FullFinetuneConfig) -> dict[str, nn.Parameter]:
    """The parameters a full fine-tuning config trains, by qualified name."""
    regex = re.compile(config.trainable)
    found = {name: p for name, p in model.named_parameters() if regex.search(name)}
    if not found:
        raise ConfigError(f"trainable {config.trainable!r} matches no parameter of {type(model).__name__}")
    return found


def adapter_config(model: nn.Module) -> AdapterConfig | None:
    """The config the model's adapters were injected with, or None for a plain model."""
    return getattr(model, _CONFIG_ATTR, None)


def adapter_layers(model: nn.Module) -> dict[str, AdapterLinear]:
    """Every adapter layer of `model` by qualified name, in model order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, AdapterLinear)}


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Adapter and gate weights only (never the frozen base), keyed by qualified name; for full
    fine-tuning, the fine-tuned parameters."""
    config = adapter_config(model)
    if isinstance(config, FullFinetuneConfig):
        return {name: p.data for name, p in finetuned_parameters(model, config).items()}
    state = {}
    for name, layer in adapter_layers(model).items():
        for key, value in layer.state_dict().items():
            if not key.startswith("base."):
                state[f"{name}.{key}"] = value
    return state


@dataclass(frozen=True)
class ParameterReport:
    """Trainable versus total parameters, plus the adapter's own split into A/B and gates."""

    trainable: int
    total: int
    low_rank: int
    gates: int

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / max(self.total, 1)

    def __str__(self) -> str:
        return (
            f"trainable params: {self.trainable:,} of {self.total:,} ({self.percent:.3f}%); "
            f"adapter A/B: {self.low_rank:,}, gates: {self.gates:,}"
        )


def trainable_parameters(model: nn.Module) -> ParameterReport:
    """Count trainable and total parameters, and split adapter parameters into A/B and gate MLPs."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    low_rank = gates = 0
    for layer in adapter_layers(model).values():
        low_rank += layer.lora_A.numel() + layer.lora_B.numel()
        gates += sum(p.numel() for n, p in layer.named_parameters() if not n.startswith(("base.", "lora_")))
    return ParameterReport(trainable=trainable, total=total, low_rank=low_rank, gates=gates)


@dataclass(frozen=True)
class GateSummary:
    """One adapter's gate decisions in the last forward, per image of the batch."""

    name: str
    rows_per_image: int
    mean_active_rank: torch.Tensor  # [batch] mean effective rank over the image's windows
    high_fraction: torch.Tensor  # [batch] fraction of the image's windows choosing segment >= 1


def gate_summary(model: nn.Module, batch_size: int) -> list[GateSummary]:
    """Summarise the gate decisions of the last forward of `batch_size` images, per adapter.

    Windowed blocks gate each window (rows are batch-major), global blocks each image.
    Adapters without gates (plain LoRA) are left out.
    """
    summaries = []
    for name, layer in adapter_layers(model).items():
        state = layer.gate_state
        if state is None:
            continue
        rows = state.segment.numel()
        if rows % batch_size:
            raise ValueError(f"{name}: {rows} gate rows do not split into {batch_size} images")
        per_image = rows // batch_size
        summaries.append(
            GateSummary(
                name=name,
                rows_per_image=per_image,
                mean_active_rank=state.active.float().view(batch_size, per_image).mean(1).cpu(),
                high_fraction=(state.segment > 0).float().view(batch_size, per_image).mean(1).cpu(),
            )
        )
    return summaries
