"""GaRA, LoRA and MoE-LoRA adapters for SAM's image encoder: configs, layers, injection, save/load."""

from garasam.adapters.config import (
    QKV_MLP_TARGETS,
    QKV_TARGETS,
    FullFinetuneConfig,
    GaRAConfig,
    LoRAConfig,
    MoELoRAConfig,
)
from garasam.adapters.inject import (
    GateSummary,
    ParameterReport,
    adapter_config,
    adapter_layers,
    adapter_state_dict,
    gate_summary,
    inject_adapters,
    trainable_parameters,
    valid_input_sizes,
)
from garasam.adapters.io import load_adapters, read_adapter_config, save_adapters
from garasam.adapters.layers import AdapterLinear, GaRALinear, GateState, LoRALinear, MoELoRALinear
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
