"""LoRA folders in PEFT's format too, both ways.

A LoRA folder that garasam writes is also a PEFT LoRA folder: its `adapter_config.json` carries PEFT's
fields beside ours (`peft_type: LORA`, `r`, `lora_alpha`, the adapted module names) and its tensors
PEFT's names (`base_model.model.<module>.lora_A.weight`), so `peft.PeftModel.from_pretrained(sam, dir)`
loads it on transformers' `SamModel`. A folder PEFT wrote for a `SamModel` (`peft_type: LORA`, plain
LoRA on Linear layers) loads through `garasam.load_adapters`. GaRA and MoE-LoRA have no PEFT
counterpart (their gates choose components per input): their folders have no `peft_type`, so PEFT
refuses them, and garasam names the adapter type it found.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from garasam.adapters.config import LoRAConfig
from garasam.errors import CheckpointError, ConfigError

PEFT_PREFIX = "base_model.model."
_OURS = re.compile(r"^(?P<module>.+)\.(?P<part>lora_[AB])$")
_THEIRS = re.compile(r"^base_model\.model\.(?P<module>.+)\.(?P<part>lora_[AB])\.weight$")
# PEFT LoRA options garasam's LoRA cannot express, with the value that means "not used"
_UNSUPPORTED = {
    "use_dora": False,
    "bias": "none",
    "fan_in_fan_out": False,
    "rank_pattern": {},
    "alpha_pattern": {},
    "modules_to_save": None,
    "layers_to_transform": None,
    "target_parameters": None,
    "lora_bias": False,
}


def peft_fields(config: LoRAConfig, targets: list[str]) -> dict[str, Any]:
    """The keys PEFT needs in a LoRA folder's config: its scaling lora_alpha / r is our `scale`."""
    return {
        "peft_type": "LORA",
        "task_type": None,
        "r": config.rank,
        "lora_alpha": config.scale * config.rank,
        "target_modules": targets,
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "inference_mode": True,
        "modules_to_save": None,
        "base_model_name_or_path": None,
    }


def peft_key(name: str) -> str:
    """`vision_encoder.layers.0.attn.qkv.lora_A` -> PEFT's `base_model.model.<...>.lora_A.weight`."""
    match = _OURS.match(name)
    return f"{PEFT_PREFIX}{match['module']}.{match['part']}.weight" if match else name


def garasam_key(key: str) -> str:
    """PEFT's tensor name -> ours; other names unchanged."""
    match = _THEIRS.match(key)
    return f"{match['module']}.{match['part']}" if match else key


def is_peft_only(meta: dict[str, Any]) -> bool:
    """A folder PEFT wrote (its config has PEFT's fields and none of garasam's)."""
    return "peft_type" in meta and "adapter" not in meta


def from_peft(meta: dict[str, Any], path: Path) -> dict[str, Any]:
    """A PEFT LoRA config as garasam's adapter metadata; anything else is refused with what it is."""
    kind = meta.get("peft_type")
    if kind != "LORA":
        raise CheckpointError(f"{path}: a PEFT {kind} adapter; garasam reads PEFT LoRA adapters only")
    used = [f"{k}={meta[k]!r}" for k, off in _UNSUPPORTED.items() if k in meta and meta[k] not in (off, None)]
    if used:
        raise CheckpointError(f"{path}: PEFT LoRA options garasam's LoRA does not have: {', '.join(used)}")
    rank, alpha = meta.get("r"), meta.get("lora_alpha")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1 or not isinstance(alpha, int | float):
        raise CheckpointError(
            f"{path}: PEFT LoRA config without a valid r / lora_alpha ({rank!r}, {alpha!r})"
        )
    scale = alpha / math.sqrt(rank) if meta.get("use_rslora") else alpha / rank
    targets = meta.get("target_modules")
    if isinstance(targets, str):  # PEFT matches a string as a whole-name regular expression
        pattern = f"^(?:{targets})$"
    elif isinstance(targets, list) and targets and all(isinstance(t, str) for t in targets):
        pattern = r"(^|\.)(" + "|".join(re.escape(t) for t in sorted(targets)) + r")$"  # PEFT: name or suffix
    else:
        raise CheckpointError(f"{path}: PEFT LoRA config without target_modules")
    try:
        adapter = LoRAConfig(rank=rank, scale=float(scale), target_modules=pattern).to_dict()
    except ConfigError as err:
        raise CheckpointError(f"{path}: {err}") from None
    return {"format_version": 1, "adapter": adapter, "backbone": {}, "peft": True}
