"""Adapter-only save and load: `adapter_config.json` + `adapter_model.safetensors` in a folder.

The folder records the backbone the adapters were trained on (model type, width, depth and the
checkpoint identity) so that loading them onto another backbone is refused with a clear message.
Names are stored in transformers' layout; official `segment_anything` names map onto it.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

import garasam
from garasam.adapters.config import AdapterConfig, FullFinetuneConfig, LoRAConfig, config_from_dict
from garasam.adapters.inject import (
    adapter_config,
    adapter_layers,
    adapter_state_dict,
    find_targets,
    inject_adapters,
)
from garasam.adapters.peft_format import from_peft, garasam_key, is_peft_only, peft_fields, peft_key
from garasam.adapters.unload import remove_adapters
from garasam.errors import CheckpointError, ConfigError
from garasam.io import atomic_path, atomic_write_text, file_sha256

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)
_OFFICIAL, _HF = "image_encoder.blocks.", "vision_encoder.layers."


def save_adapters(
    model: nn.Module, directory: str | os.PathLike, extra: dict[str, Any] | None = None
) -> Path:
    """Write the model's adapter and gate weights (and nothing of SAM) to `directory`."""
    config = adapter_config(model)
    if config is None:
        raise ConfigError("this model has no adapters to save; call inject_adapters first")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {_canonical(k): v.detach().contiguous().cpu() for k, v in adapter_state_dict(model).items()}
    targets = [_canonical(n) for n in adapter_layers(model)]
    peft = peft_fields(config, targets) if isinstance(config, LoRAConfig) else {}
    if peft:  # LoRA folders are PEFT folders too (garasam.adapters.peft_format)
        state = {peft_key(k): v for k, v in state.items()}
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "garasam_adapter_type": config.adapter_type})
        digest = file_sha256(tmp)
    meta = {
        "format_version": FORMAT_VERSION,
        "garasam_version": garasam.__version__,
        "adapter": config.to_dict(),
        "backbone": backbone_identity(model, config),
        "target_modules": targets,
        "weights_sha256": digest,
        **peft,
        **(extra or {}),
    }
    atomic_write_text(directory / CONFIG_NAME, json.dumps(meta, indent=2) + "\n")
    return directory


def read_adapter_config(directory: str | os.PathLike) -> dict[str, Any]:
    """Parse and check `adapter_config.json` of an adapter folder."""
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: adapter folder does not exist")
    if not path.is_file():
        raise CheckpointError(f"{directory}: not an adapter folder (no {CONFIG_NAME})")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable adapter config ({err})") from err
    if isinstance(meta, dict) and is_peft_only(meta):
        return from_peft(meta, path)
    if not isinstance(meta, dict) or "adapter" not in meta or "backbone" not in meta:
        raise CheckpointError(f"{path}: not a garasam adapter config (missing 'adapter' or 'backbone')")
    version = meta.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS or isinstance(version, bool):
        supported = ", ".join(str(v) for v in SUPPORTED_FORMAT_VERSIONS)
        raise CheckpointError(
            f"{path}: format_version {version!r} is not supported by garasam {garasam.__version__} "
            f"(supported: {supported}); a newer garasam may read it"
        )
    if not isinstance(meta["adapter"], dict) or not isinstance(meta["backbone"], dict):
        raise CheckpointError(f"{path}: 'adapter' and 'backbone' must be JSON objects")
    listed = meta.get("target_modules")
    if listed is not None and not (isinstance(listed, list) and all(isinstance(n, str) for n in listed)):
        raise CheckpointError(f"{path}: 'target_modules' must be a list of module names")
    return meta


def load_adapters(model: nn.Module, directory: str | os.PathLike, trainable: bool = False) -> nn.Module:
    """Inject the adapters saved in `directory` into `model` and load their weights, in place."""
    directory = Path(directory)
    meta = read_adapter_config(directory)
    config = saved_adapter_config(directory, meta)
    _check_backbone(model, config, meta["backbone"], directory)
    _check_listed_targets(model, config, meta.get("target_modules"), directory)
    saved = read_adapter_weights(directory, meta)
    weights = directory / WEIGHTS_NAME
    existing = adapter_config(model)
    if existing is None:
        flags = {name: p.requires_grad for name, p in model.named_parameters()}
        inject_adapters(model, config)
        try:
            _fill(model, saved, weights, trainable)
        except CheckpointError:  # a refused file leaves the model as it was
            remove_adapters(model)
            for name, p in model.named_parameters():
                p.requires_grad_(flags[name])
            raise
    elif existing.to_dict() != config.to_dict():
        raise CheckpointError(
            f"{directory}: the model already has different adapters ({existing.adapter_type})"
        )
    else:
        _fill(model, saved, weights, trainable)
    _warn_on_other_checkpoint(model, meta["backbone"], directory)
    return model


def saved_adapter_config(directory: str | os.PathLike, meta: dict[str, Any] | None = None) -> AdapterConfig:
    """The config of the adapters saved in `directory` (errors name the file)."""
    directory = Path(directory)
    meta = read_adapter_config(directory) if meta is None else meta
    try:
        return config_from_dict(_with_legacy_defaults(meta["adapter"]))
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"{directory / CONFIG_NAME}: {err}") from err


def _with_legacy_defaults(adapter: dict[str, Any]) -> dict[str, Any]:
    """Adapters saved before the gates pooled valid tokens only were trained pooling every token."""
    if adapter.get("adapter_type") in ("gara", "moe_lora") and "gate_pooling" not in adapter:
        return {**adapter, "gate_pooling": "all"}
    return adapter


def _fill(model: nn.Module, saved: dict[str, torch.Tensor], weights: Path, trainable: bool) -> None:
    """Copy the saved tensors into the model's adapters, which must match them name for name and shape
    for shape; then make them trainable or not."""
    own = {_canonical(k): k for k in adapter_state_dict(model)}
    missing, unexpected = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{weights}: adapter weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    current = model.state_dict()
    with torch.no_grad():
        for key, name in own.items():
            if saved[key].shape != current[name].shape:
                raise CheckpointError(
                    f"{weights}: {key} has shape {tuple(saved[key].shape)}, model expects {tuple(current[name].shape)}"
                )
            current[name].copy_(saved[key])
    params = dict(model.named_parameters())
    for name in own.values():
        if name in params:  # buffers have no gradient
            params[name].requires_grad_(trainable)


def read_adapter_weights(directory: str | os.PathLike, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors of `adapter_model.safetensors`, checked against the digest its config records
    (folders written before the digest existed are read unchecked) and for non-finite values: safetensors
    has no checksum, so a flipped bit would otherwise load as a silently different adapter."""
    weights = Path(directory) / WEIGHTS_NAME
    if not weights.is_file():
        raise CheckpointError(f"{directory}: missing {WEIGHTS_NAME}")
    expected = meta.get("weights_sha256")
    if expected is not None and expected != file_sha256(weights):
        raise CheckpointError(
            f"{weights}: contents differ from the digest in {CONFIG_NAME} (damaged or replaced file)"
        )
    try:
        saved = {garasam_key(k): v for k, v in load_file(str(weights)).items()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({err})") from err
    bad = [key for key, tensor in saved.items() if tensor.is_floating_point() and not tensor.isfinite().all()]
    if bad:
        raise CheckpointError(
            f"{weights}: non-finite values (NaN or inf) in {len(bad)} tensor(s), e.g. {bad[0]}"
        )
    return saved


def backbone_identity(model: nn.Module, config: AdapterConfig) -> dict[str, Any]:
    """What the adapters depend on: encoder width, depth, model type and checkpoint identity."""
    from garasam.models.registry import family_of_config, model_type_of_encoder

    targets = [(n, m.base if hasattr(m, "base") else m) for n, m in _target_linears(model, config)]
    width = targets[0][1].in_features
    depth = len({_block_index(n) for n, _ in targets})
    family = family_of_config(model.config) if hasattr(model, "config") else "sam"
    model_type = model_type_of_encoder(width, depth, family) or "custom"
    return {
        "model_type": model_type,
        "hidden_size": width,
        "num_blocks": depth,
        "checkpoint": getattr(model, "garasam_checkpoint", None),
    }


def _target_linears(model: nn.Module, config: AdapterConfig) -> list[tuple[str, nn.Module]]:
    layers = adapter_layers(model)
    return list(layers.items()) if layers else find_targets(model, config.target_modules)


def _check_backbone(model: nn.Module, config: AdapterConfig, saved: dict[str, Any], directory: Path) -> None:
    if not saved:  # a folder from another library (PEFT) records no backbone: the shapes are checked
        return
    try:
        mine = backbone_identity(model, config)
    except ConfigError as err:
        raise CheckpointError(f"{directory}: these adapters do not fit this model ({err})") from err
    fields = (("hidden_size", "encoder width"), ("num_blocks", "adapted blocks"))
    differ = [
        f"{label} {saved.get(key)!r} in the file, {mine[key]} in this model"
        for key, label in fields
        if saved.get(key) != mine[key]
    ]
    if differ:
        raise CheckpointError(
            f"{directory}: these adapters do not fit this model: {'; '.join(differ)} "
            f"(the file calls its backbone {saved.get('model_type')!r}, this model is {mine['model_type']!r})"
        )


def _check_listed_targets(
    model: nn.Module, config: AdapterConfig, listed: list[str] | None, directory: Path
) -> None:
    """The layers the file says it adapts must be the ones the injection adapted: a file whose
    names match nothing here would otherwise load as adapters that change nothing."""
    if listed is None or isinstance(config, FullFinetuneConfig):
        return
    mine = [_canonical(n) for n, _ in _target_linears(model, config)]
    missing = sorted(set(listed) - set(mine))
    if missing:
        raise CheckpointError(
            f"{directory / CONFIG_NAME}: target_modules lists {len(missing)} layer(s) this model does not "
            f"adapt (e.g. {missing[0]!r}; adapted here: {mine[0] if mine else 'none'} ...)"
        )


def _warn_on_other_checkpoint(model: nn.Module, saved: dict[str, Any], directory: Path) -> None:
    mine, theirs = getattr(model, "garasam_checkpoint", None), saved.get("checkpoint")
    if mine and theirs and mine.get("sha256") != theirs.get("sha256"):
        warnings.warn(
            f"{directory}: adapters were trained on checkpoint {theirs.get('name')}, "
            f"the model was loaded from {mine.get('name')}",
            stacklevel=3,
        )


def _canonical(name: str) -> str:
    return name.replace(_OFFICIAL, _HF)


def _block_index(name: str) -> str:
    canonical = _canonical(name)
    if _HF in canonical:
        return canonical.split(_HF, 1)[1].split(".", 1)[0]
    return canonical.rsplit(".", 1)[0]
