"""The one door through which images reach an adapted encoder: the valid area of each image goes
to the gates before the forward, and the gates' decisions come back with the features.

Prediction, evaluation and training all encode here, so no caller sets the gates' valid tokens
or reads their states by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from garasam.adapters import GateState, GateSummary, adapter_layers
from garasam.adapters.gating import clear_valid_tokens, set_valid_tokens, summarize_gates
from garasam.models.features import ImageFeatures, encode_images


@dataclass(frozen=True)
class Gates:
    """The gate decisions of one `encode` call, per adapter that has gates (GaRA, MoE-LoRA; none
    for LoRA or a plain SAM). `summary()` reduces them per image when asked (a device sync)."""

    states: dict[str, GateState]
    num_images: int

    def summary(self) -> list[GateSummary]:
        """Per adapter: the mean effective rank and high-space fraction of each image."""
        return summarize_gates(self.states, self.num_images)

    def __bool__(self) -> bool:
        return bool(self.states)


def encode(
    model: nn.Module, pixel_values: torch.Tensor, input_sizes: Sequence[tuple[int, int]]
) -> tuple[ImageFeatures, Gates]:
    """Encode a batch of SAM inputs; `input_sizes` are the (h, w) of each resized image inside the
    padded square, so that the gates pool over image tokens only.

    With gradients on, the valid area stays set until `release_valid_area` (after the backward):
    activation checkpointing re-runs the gates in the backward and must see the same area. Without
    gradients it is released here.
    """
    if len(input_sizes) != pixel_values.shape[0]:
        raise ValueError(f"encode: {pixel_values.shape[0]} images but {len(input_sizes)} input sizes")
    set_valid_tokens(model, input_sizes)
    try:
        features = encode_images(model, pixel_values)
    finally:
        if not torch.is_grad_enabled():
            clear_valid_tokens(model)
    return features, read_gates(model, pixel_values.shape[0])


def encode_for_export(
    model: nn.Module, pixel_values: torch.Tensor, valid_tokens: torch.Tensor | None
) -> tuple[ImageFeatures, Gates]:
    """`encode` inside a graph being exported: the valid area comes as a token mask `[B, g, g]`
    (a graph input: no Python sizes to read), or None when every token counts (SAM 2's stretched
    square). Only SAM 1's encoders have one token grid, which is all a single mask can describe."""
    for layer in adapter_layers(model).values():
        if layer.token_grid is not None:
            layer.valid_tokens = valid_tokens
    try:
        features = encode_images(model, pixel_values)
    finally:
        clear_valid_tokens(model)
    return features, read_gates(model, pixel_values.shape[0])


def release_valid_area(model: nn.Module) -> None:
    """After a training step's backward: the gates pool over every token again until the next `encode`."""
    clear_valid_tokens(model)


def read_gates(model: nn.Module, num_images: int = 1) -> Gates:
    """The gate decisions of the model's last forward (of `num_images` inputs), e.g. a video
    tracker's after each frame and object; a CUDA graph's own tensors are copied, as its next
    replay overwrites them (a copy on the device, no sync)."""
    states = {}
    for name, layer in adapter_layers(model).items():
        state = layer.gate_state
        if state is not None:
            if state.owned_by_graph:
                state = GateState(state.segment.clone(), state.active.clone())
            states[name] = state
    return Gates(states, num_images)
