"""GaRA, LoRA and MoE-LoRA adapters for SAM's image encoder: configs, layers, injection, save/load."""

from garasam.adapters.config import (
    QKV_MLP_TARGETS,
    QKV_TARGETS,
    FullFinetuneConfig,
    GaRAConfig,
    LoRAConfig,
    MoELoRAConfig,
)
from garasam.adapters.gating import GateSummary, gate_summary, valid_input_sizes
from garasam.adapters.inject import inject_adapters
from garasam.adapters.inspect import (
    ParameterReport,
    adapter_config,
    adapter_layers,
    adapter_state_dict,
    trainable_parameters,
)
from garasam.adapters.io import load_adapters, read_adapter_config
from garasam.adapters.layers import AdapterLinear, GaRALinear, GateState, LoRALinear, MoELoRALinear
from garasam.adapters.save import save_adapters
from garasam.adapters.unload import disable_adapters, merge_and_unload, remove_adapters

__all__ = [
    "QKV_MLP_TARGETS",
    "QKV_TARGETS",
    "AdapterLinear",
    "FullFinetuneConfig",
    "GaRAConfig",
    "GaRALinear",
    "GateState",
    "GateSummary",
    "LoRAConfig",
    "LoRALinear",
    "MoELoRAConfig",
    "MoELoRALinear",
    "ParameterReport",
    "adapter_config",
    "adapter_layers",
    "adapter_state_dict",
    "disable_adapters",
    "gate_summary",
    "inject_adapters",
    "load_adapters",
    "merge_and_unload",
    "read_adapter_config",
    "remove_adapters",
    "save_adapters",
    "trainable_parameters",
    "valid_input_sizes",
]
