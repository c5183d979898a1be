"""Questions about an adapted model: its adapter config, its adapter layers and their weights, the
layers a config targets, and how many parameters train. Every other adapters module asks here."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from garasam.adapters.config import AdapterConfig, FullFinetuneConfig
from garasam.adapters.layers import AdapterLinear
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
    if not isinstance(model, nn.Module):
        raise ConfigError(f"expected a model (torch.nn.Module), got {type(model).__name__}")
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    low_rank = gates = 0
    for layer in adapter_layers(model).values():
        low_rank += layer.lora_A.numel() + layer.lora_B.numel()
        gates += sum(p.numel() for n, p in layer.named_parameters() if not n.startswith(("base.", "lora_")))
    return ParameterReport(trainable=trainable, total=total, low_rank=low_rank, gates=gates)
