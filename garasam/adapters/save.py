"""Adapter-only save: `adapter_config.json` + `adapter_model.safetensors` in a folder.

The folder records the backbone the adapters were trained on (model type, width, depth and the
checkpoint identity: name, size, sha256 and where it was read from), so that loading them onto
another backbone is refused with a clear message and `GaraSam.from_pretrained` can rebuild the
base. Names are stored in transformers' layout; official `segment_anything` names map onto it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from torch import nn

from garasam.adapters.config import MEMORY_TARGETS, AdapterConfig, LoRAConfig
from garasam.adapters.inspect import adapter_config, adapter_layers, adapter_state_dict, find_targets
from garasam.adapters.peft_format import peft_fields, peft_key
from garasam.errors import ConfigError
from garasam.io import atomic_write_text, save_safetensors
from garasam.version import __version__

_OFFICIAL, _HF = "image_encoder.blocks.", "vision_encoder.layers."

CONFIG_NAME = "adapter_config.json"


WEIGHTS_NAME = "adapter_model.safetensors"


FORMAT_VERSION = 1


def save_adapters(
    model: nn.Module, directory: str | os.PathLike, extra: dict[str, Any] | None = None
) -> Path:
    """Write the model's adapter and gate weights (and nothing of SAM) to `directory`."""
    config = adapter_config(model)
    if config is None:
        raise ConfigError("this model has no adapters to save; call inject_adapters first")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {canonical_name(k): v.detach().contiguous().cpu() for k, v in adapter_state_dict(model).items()}
    targets = [canonical_name(n) for n in adapter_layers(model)]
    peft = peft_fields(config, targets) if isinstance(config, LoRAConfig) else {}
    if peft:  # LoRA folders are PEFT folders too (garasam.adapters.peft_format)
        state = {peft_key(k): v for k, v in state.items()}
    metadata = {"format": "pt", "garasam_adapter_type": config.adapter_type}
    digest = save_safetensors(state, directory / WEIGHTS_NAME, metadata)
    meta = {
        "format_version": FORMAT_VERSION,
        "garasam_version": __version__,
        "adapter": config.to_dict(),
        "backbone": backbone_identity(model, config),
        "target_modules": targets,
        "weights_sha256": digest,
        **peft,
        **(extra or {}),
    }
    atomic_write_text(directory / CONFIG_NAME, json.dumps(meta, indent=2) + "\n")
    return directory


def backbone_identity(model: nn.Module, config: AdapterConfig) -> dict[str, Any]:
    """What the adapters depend on: encoder width, depth, model type and checkpoint identity."""
    from garasam.models.registry import encoder_shape_of_config, family_of_config, model_type_of_encoder

    targets = [(n, m.base if hasattr(m, "base") else m) for n, m in target_linears(model, config)]
    memory = re.compile(MEMORY_TARGETS)
    encoder = [(n, m) for n, m in targets if not memory.search(n)]
    memory_layers = len(
        {n.split(".self_attn")[0].split(".cross_attn")[0] for n, _ in targets if memory.search(n)}
    )
    if encoder:
        width, depth = encoder[0][1].in_features, len({block_index(n) for n, _ in encoder})
    else:  # adapters in SAM 2's memory attention only: the encoder is the model's, unadapted
        width, depth = encoder_shape_of_config(model.config)
    family = family_of_config(model.config) if hasattr(model, "config") else "sam"
    model_type = model_type_of_encoder(width, depth, family) or "custom"
    identity = {
        "model_type": model_type,
        "hidden_size": width,
        "num_blocks": depth,
        "checkpoint": getattr(model, "garasam_checkpoint", None),
    }
    if memory_layers:  # SAM 2.1's video mode: adapted memory-attention layers
        identity["memory_layers"] = memory_layers
    return identity


def target_linears(model: nn.Module, config: AdapterConfig) -> list[tuple[str, nn.Module]]:
    """The adapted layers (or, before injection and for full fine-tuning, the targeted Linears)."""
    layers = adapter_layers(model)
    return list(layers.items()) if layers else find_targets(model, config.target_modules)


def canonical_name(name: str) -> str:
    """A layer name in transformers' layout (official `image_encoder.blocks.N` names mapped)."""
    return name.replace(_OFFICIAL, _HF)


def block_index(name: str) -> str:
    """The encoder block a layer name belongs to."""
    canonical = canonical_name(name)
    if _HF in canonical:
        return canonical.split(_HF, 1)[1].split(".", 1)[0]
    return canonical.rsplit(".", 1)[0]


def save_pretrained(model: nn.Module, directory: str | os.PathLike) -> Path:
    """An adapted SAM as a folder `garasam.GaraSam.from_pretrained` reads back: its adapters, whose
    config names the base checkpoint (Hub id or path, size, sha256), never a copy of its weights."""
    if adapter_config(model) is None:
        raise ConfigError(
            "this SAM has no adapters: save it with garasam.save_sam (or SamModel.save_pretrained)"
        )
    base = getattr(model, "garasam_checkpoint", None)
    if not base or not base.get("source"):
        raise ConfigError(
            "this SAM was not built from a checkpoint (random weights), so the folder could not name its "
            "base; build it with garasam.build_sam(model_type, checkpoint)"
        )
    return save_adapters(model, directory)
