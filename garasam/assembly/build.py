"""One way to build a model: SAM from its checkpoint, then its adapters, then the fast path.

`build_model` is what the predictor, the web page, evaluation, training and `GaraSam` call; each
step is also public (`resolve_model_type`, `accelerate`) for the callers that share weights
between models (evaluation copies one backbone per model, the web page twins it).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from garasam.adapters import inject_adapters, load_adapters, read_adapter_config
from garasam.adapters.config import AdapterConfig
from garasam.assembly.spec import ModelSpec
from garasam.errors import CheckpointError, ConfigError
from garasam.fast.encoder import FastSamVisionEncoder, accelerate
from garasam.models import MODEL_TYPES, build_sam
from garasam.models.build import require_checkpoint
from garasam.models.hub import infer_model_type
from garasam.runtime import pick_device


def resolve_model_type(
    adapters_dir: str | os.PathLike | None,
    checkpoint: str | os.PathLike | None,
    model_type: str | None,
) -> str:
    """Decide the backbone before building anything, and refuse adapters made for another one.

    In order: `model_type`; the backbone recorded in the adapter folder; a type named in the
    checkpoint's file name (`sam_vit_b_01ec64.pth`); `tiny` when no checkpoint is given.
    """
    if model_type is not None and model_type not in MODEL_TYPES:
        raise ConfigError(f"unknown model type {model_type!r}; choose one of {sorted(MODEL_TYPES)}")
    recorded = None
    if adapters_dir is not None:
        recorded = read_adapter_config(adapters_dir)["backbone"].get("model_type")
        recorded = recorded if recorded in MODEL_TYPES else None
    if model_type is not None and recorded is not None and recorded != model_type:
        raise CheckpointError(
            f"{adapters_dir}: adapters were made for a {recorded} backbone, but the model is {model_type}"
        )
    if model_type is not None:
        return model_type
    if recorded is not None:
        return recorded
    if checkpoint is None:
        return "tiny"
    inferred = infer_model_type(checkpoint)
    if inferred is not None:
        return inferred
    raise ConfigError(f"{checkpoint}: cannot tell the model type from the file name; give it (e.g. vit_b)")


def build_model(
    spec: ModelSpec,
    *,
    device: str | torch.device | None = "auto",
    base: nn.Module | None = None,
    inject: AdapterConfig | None = None,
    trainable: bool = False,
    fast: bool | None = False,
    fast_dtype: torch.dtype = torch.bfloat16,
    cuda_graphs: bool = False,
    random_weights: bool = False,
    video: bool = False,
) -> nn.Module:
    """SAM + checkpoint + adapters + fast path, in that order (adapters before the fast path, so
    that they are fused and the frozen weights are cast once).

    `base`: an already-built SAM to adapt instead of building one from `spec` (a copy or a twin
    that shares frozen weights). `inject`: fresh adapters when `spec` names no folder. `fast`:
    `accelerate`'s switch (None: on for CUDA). A real model type without a checkpoint is refused
    (its masks would mean nothing) unless `random_weights`. `video`: SAM 2.1 in video mode
    (`garasam.video.VideoPredictor`'s model; the fast path is SAM 1's and stays off).
    """
    if base is None:
        model_type = resolve_model_type(spec.adapters, spec.checkpoint, spec.model_type)
        require_checkpoint(model_type, spec.checkpoint, random_weights)
        base = build_sam(model_type, spec.checkpoint, device=pick_device(device), video=video)
    if spec.adapters is not None:
        load_adapters(base, spec.adapters, trainable=trainable)
    elif inject is not None:
        inject_adapters(base, inject)
    accelerate(base, fast, dtype=fast_dtype, cuda_graphs="capture" if cuda_graphs else False)
    return base


def build_models(
    specs: Mapping[str, ModelSpec | Path | None],
    model_type: str | None,
    checkpoint: str | None,
    device: str,
    fast: bool | None = None,
    random_weights: bool = False,
    video: bool = False,
) -> tuple[dict[str, nn.Module], dict[str, dict[str, Any]]]:
    """Several models for one comparison, each with its adapters loaded. Entries without a backbone
    of their own (a bare adapters folder or None) share the run's base SAM (`model_type`,
    `checkpoint`); every backbone is read once and copied for each further model on it.

    `fast` (default: on for CUDA): each encoder on the fast path. Adapters made for another
    backbone are refused by `load_adapters` with a CheckpointError. `video`: SAM 2.1 in video mode.
    """
    specs = {name: s if isinstance(s, ModelSpec) else ModelSpec(adapters=s) for name, s in specs.items()}
    backbones = {name: _backbone(spec, model_type, checkpoint) for name, spec in specs.items()}
    users = {key: [name for name in specs if backbones[name] == key] for key in backbones.values()}
    bases = {
        key: build_model(ModelSpec(*key), device=device, random_weights=random_weights, video=video)
        for key in users
    }
    models: dict[str, nn.Module] = {}
    info: dict[str, dict[str, Any]] = {}
    for name, spec in specs.items():
        key = backbones[name]
        base = bases[key] if name == users[key][-1] else copy.deepcopy(bases[key])
        models[name] = build_model(ModelSpec(adapters=spec.adapters), base=base, fast=fast)
        info[name] = {"adapters_dir": None if spec.adapters is None else str(spec.adapters)}
        if spec.adapters is not None:
            info[name]["adapter_file"] = read_adapter_config(spec.adapters)
        info[name]["fast_path"] = is_fast(models[name])
    return models, info


def is_fast(model: nn.Module) -> bool:
    """Whether the model's encoder runs on the fast path."""
    return isinstance(getattr(model, "vision_encoder", None), FastSamVisionEncoder)


def _backbone(spec: ModelSpec, model_type: str | None, checkpoint: str | None) -> tuple[str, str | None]:
    """(model type, checkpoint) a model is built from: its own, or the run's --model-type/--checkpoint."""
    if spec.model_type is not None:
        return spec.model_type, None if spec.checkpoint is None else str(spec.checkpoint)
    resolved = model_type or ("tiny" if checkpoint is None else infer_model_type(checkpoint))
    if resolved is None:
        raise ConfigError(
            f"--checkpoint {checkpoint}: cannot tell its model type; add --model-type (one of {', '.join(MODEL_TYPES)})"
        )
    if resolved not in MODEL_TYPES:
        raise ConfigError(f"--model-type {resolved!r}: choose one of {', '.join(MODEL_TYPES)}")
    return resolved, checkpoint
