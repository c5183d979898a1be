"""What the gates see and what they chose: the valid area of each image (so that padding does not
count in the gates' means) and per-image summaries of the gate decisions."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from garasam.adapters.inspect import adapter_layers
from garasam.adapters.layers import GateState
from garasam.errors import ConfigError


@contextlib.contextmanager
def valid_input_sizes(model: nn.Module, input_sizes: Sequence[tuple[int, int]]) -> Iterator[None]:
    """Tell the gates which tokens of each image of the next encoder call hold the image.

    `input_sizes` are the (h, w) of the resized images inside SAM's padded square input, one per
    image of the batch; a token counts when its patch holds at least one image pixel. Without this
    context only the edge windows' zero padding is left out of the gates' means.
    """
    set_valid_tokens(model, input_sizes)
    try:
        yield
    finally:
        clear_valid_tokens(model)


def clear_valid_tokens(model: nn.Module) -> None:
    """Forget the valid area: every token counts again (see `set_valid_tokens`)."""
    for layer in adapter_layers(model).values():
        layer.valid_tokens = None


def set_valid_tokens(model: nn.Module, input_sizes: Sequence[tuple[int, int]]) -> None:
    """`valid_input_sizes` without the context: the area stays set until cleared or set again
    (training keeps it through the backward, where activation checkpointing re-runs the gates)."""
    layers = [layer for layer in adapter_layers(model).values() if layer.token_grid is not None]
    if not layers:
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
    states = {name: layer.gate_state for name, layer in adapter_layers(model).items()}
    return summarize_gates({name: state for name, state in states.items() if state is not None}, batch_size)


def summarize_gates(states: Mapping[str, GateState], batch_size: int) -> list[GateSummary]:
    """`gate_summary` of recorded gate states (`garasam.assembly.encoding` keeps them per encode)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive number of images, got {batch_size!r}")
    summaries = []
    for name, state in states.items():
        rows = state.segment.numel()
        if rows % batch_size:
            raise ConfigError(f"{name}: {rows} gate rows do not split into {batch_size} images")
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
