"""Adapter-only load: an adapter folder (`garasam.adapters.save`'s, or a PEFT LoRA folder) read,
checked against the model it goes onto, and filled into freshly injected adapters."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from garasam.adapters.config import AdapterConfig, FullFinetuneConfig, adapter_config_from_dict
from garasam.adapters.inject import inject_adapters
from garasam.adapters.inspect import adapter_config, adapter_state_dict
from garasam.adapters.peft_format import from_peft, garasam_key, is_peft_only
from garasam.adapters.save import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    backbone_identity,
    canonical_name,
    target_linears,
)
from garasam.adapters.unload import remove_adapters
from garasam.errors import CheckpointError, ConfigError
from garasam.io import file_sha256
from garasam.version import __version__

SUPPORTED_FORMAT_VERSIONS = (1,)


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
            f"{path}: format_version {version!r} is not supported by garasam {__version__} "
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
        return adapter_config_from_dict(_with_legacy_defaults(meta["adapter"]))
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
    own = {canonical_name(k): k for k in adapter_state_dict(model)}
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


def _check_backbone(model: nn.Module, config: AdapterConfig, saved: dict[str, Any], directory: Path) -> None:
    if not saved:  # a folder from another library (PEFT) records no backbone: the shapes are checked
        return
    if saved.get("memory_layers") and not hasattr(model, "memory_attention"):
        raise CheckpointError(
            f"{directory}: these adapters sit in SAM 2.1's memory attention, which only video mode has: "
            "load them into build_sam(model_type, checkpoint, video=True) (garasam track, VideoPredictor)"
        )
    try:
        mine = backbone_identity(model, config)
    except ConfigError as err:
        raise CheckpointError(f"{directory}: these adapters do not fit this model ({err})") from err
    fields = (
        ("hidden_size", "encoder width"),
        ("num_blocks", "adapted blocks"),
        ("memory_layers", "memory layers"),
    )
    differ = [
        f"{label} {saved.get(key)!r} in the file, {mine.get(key)} in this model"
        for key, label in fields
        if saved.get(key) != mine.get(key)
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
    mine = [canonical_name(n) for n, _ in target_linears(model, config)]
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
