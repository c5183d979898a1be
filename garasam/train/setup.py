"""The model a run trains, built by `garasam.assembly.build_model` with training's rules: fresh or
starting adapters, the fast encoder (an explicit request it cannot honour is an error) and
activation checkpointing."""

from __future__ import annotations

import signal
import warnings
from pathlib import Path

import torch
from torch import nn

from garasam.assembly import ModelSpec, accelerate, build_model
from garasam.errors import ConfigError
from garasam.runtime import (
    uses_bf16,
)
from garasam.train.config import TrainConfig


def apply_fast_encoder(sam: nn.Module, enabled: bool | None, precision: str) -> None:
    """Switch the encoder to `garasam.fast.encoder` (None: on CUDA only).

    Adapters must already be injected. The frozen weights take the autocast dtype (bf16 halves
    their memory and feeds the fused kernels), trainable adapters and gates keep float32 weights.
    """
    from garasam.adapters import FullFinetuneConfig, adapter_config
    from garasam.fast.encoder import supports_fast_path

    if isinstance(adapter_config(sam), FullFinetuneConfig):
        if enabled:
            raise ConfigError("run.fast_encoder=true casts the frozen encoder; full fine-tuning trains it")
        return
    if not supports_fast_path(sam):
        if enabled:
            raise ConfigError(
                "run.fast_encoder=true: the fast encoder is SAM 1's (ViT); SAM 2.1 runs transformers' own"
            )
        return
    device = next(sam.parameters()).device
    accelerate(sam, enabled, dtype=torch.bfloat16 if uses_bf16(device, precision) else torch.float32)


def enable_activation_checkpointing(sam: nn.Module) -> None:
    """Recompute each encoder block in backward (transformers' GradientCheckpointingLayer, non-reentrant).

    torch.utils.checkpoint restores the RNG state for the recomputation, so GaRA's Gumbel noise is
    drawn identically twice and the gates take the same decisions in forward and backward.
    """
    encoder = sam.vision_encoder
    kwargs = {"use_reentrant": False}
    if hasattr(encoder, "activation_checkpointing_enable"):
        encoder.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # transformers < 5
        encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def build_training_model(config: TrainConfig, device: torch.device) -> nn.Module:
    """SAM with the run's adapters injected, fast encoder and checkpointing as configured."""
    if config.model.checkpoint is None and config.model.model_type != "tiny":
        warnings.warn(
            f"model.checkpoint is not set: training adapters on a randomly initialised {config.model.model_type} "
            "(pass model.checkpoint=/path/to/sam_weights for a real run)",
            stacklevel=3,
        )
    init = None if config.model.init_adapters is None else init_adapters_matching(config)
    spec = ModelSpec(config.model.model_type, config.model.checkpoint, init)
    # the fast encoder after, by training's rule: asked for and impossible is an error, not a no-op
    sam = build_model(
        spec, device=device, inject=config.adapter_config(), trainable=True, fast=False, random_weights=True
    )
    apply_fast_encoder(sam, config.run.fast_encoder, config.run.precision)
    if config.run.activation_checkpointing:
        enable_activation_checkpointing(sam)
    return sam


def init_adapters_matching(config: TrainConfig) -> Path:
    """`model.init_adapters`, once its adapters are known to be the ones the run's recipe describes."""
    from garasam.adapters.io import saved_adapter_config

    directory = Path(config.model.init_adapters)
    saved = saved_adapter_config(directory).to_dict()
    wanted = config.adapter_config().to_dict()
    differ = sorted(key for key in saved.keys() | wanted.keys() if saved.get(key) != wanted.get(key))
    if differ:
        details = "; ".join(f"{key}: saved {saved.get(key)!r}, run {wanted.get(key)!r}" for key in differ)
        raise ConfigError(
            f"model.init_adapters {directory}: these adapters differ from the run's adapter section "
            f"({details}); set the adapter section to theirs (e.g. adapter.{differ[0]}=...)"
        )
    return directory


def _ignore_signals(worker_id: int) -> None:
    """Loader workers leave SIGINT/SIGTERM to the main process, which checkpoints and then stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
