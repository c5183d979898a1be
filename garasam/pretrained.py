"""`GaraSam.from_pretrained` / `save_pretrained`: a SAM with adapters as one folder, Hugging Face style.

The folder holds the adapters (`adapter_config.json` + `adapter_model.safetensors`, as `save_adapters`
writes them) and `garasam.json`, which refers to the base SAM by Hub id or path together with its size
and sha256 prefix, never a copy of its weights: a ViT-H adapter folder stays a few MB. `from_pretrained`
takes such a folder, its Hub id (resolved through the local Hugging Face cache), or a plain SAM
checkpoint (then without adapters). An adapted model's own `save_pretrained` writes this folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from transformers import SamModel

from garasam.adapters import adapter_config, load_adapters, save_adapters
from garasam.errors import CheckpointError, ConfigError
from garasam.io import atomic_write_text
from garasam.models import build_sam
from garasam.models.hub import infer_model_type, is_hub_id
from garasam.models.hub import resolve as resolve_hub_id

CONFIG_NAME = "garasam.json"
FORMAT_VERSION = 1


class GaraSam:
    """Namespace of the two calls; the model itself is transformers' `SamModel`."""

    @staticmethod
    def save_pretrained(model: SamModel, directory: str | os.PathLike) -> Path:
        """Adapters + a reference to the base checkpoint the model was built from."""
        base = getattr(model, "garasam_checkpoint", None)
        if adapter_config(model) is None:
            raise ConfigError(
                "this SAM has no adapters: save it with garasam.save_sam (or SamModel.save_pretrained)"
            )
        if not base or not base.get("source"):
            raise ConfigError(
                "this SAM was not built from a checkpoint (random weights), so the folder could not name its "
                "base; build it with garasam.build_sam(model_type, checkpoint)"
            )
        from garasam.models.registry import model_type_of_config

        directory = save_adapters(model, directory)
        record = {
            "format_version": FORMAT_VERSION,
            "base": {"model_type": model_type_of_config(model.config), **base},
        }
        atomic_write_text(directory / CONFIG_NAME, json.dumps(record, indent=2) + "\n")
        return directory

    @staticmethod
    def from_pretrained(
        name_or_path: str | os.PathLike, device: str | torch.device = "cpu", trainable: bool = False
    ) -> SamModel:
        """A GaraSam folder or Hub id -> its base SAM with the adapters loaded; a SAM checkpoint -> SAM."""
        folder = resolve_hub_id(str(name_or_path)) if is_hub_id(str(name_or_path)) else Path(name_or_path)
        if not (folder / CONFIG_NAME).is_file():
            model_type = infer_model_type(folder) if folder.exists() else None
            if model_type is None:
                raise CheckpointError(
                    f"{name_or_path}: neither a GaraSam folder ({CONFIG_NAME} + adapters) nor a SAM checkpoint "
                    "whose model type can be told"
                )
            return build_sam(model_type, folder, device=device)
        base = _read_base(folder / CONFIG_NAME)
        source = base["source"]
        if not is_hub_id(source) and not Path(source).exists():
            raise CheckpointError(
                f"{folder / CONFIG_NAME}: the base checkpoint {source} is not there; put it back, or build the "
                f"base yourself (sha256 {base.get('sha256')}...) and call garasam.load_adapters(model, {str(folder)!r})"
            )
        model = build_sam(base["model_type"], source, device=device)
        found = model.garasam_checkpoint  # build_sam hashed the weights already
        if found["sha256"] != base.get("sha256"):
            raise CheckpointError(
                f"{folder / CONFIG_NAME}: {source} has sha256 {found['sha256']}..., the adapters were saved "
                f"on {base.get('sha256')}...: another checkpoint"
            )
        return load_adapters(model, folder, trainable=trainable)


def _read_base(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable ({err})") from None
    base = record.get("base") if isinstance(record, dict) else None
    if record.get("format_version") != FORMAT_VERSION or not isinstance(base, dict):
        raise CheckpointError(f"{path}: not a garasam.json of format {FORMAT_VERSION}")
    if not isinstance(base.get("source"), str) or not isinstance(base.get("model_type"), str):
        raise CheckpointError(f"{path}: 'base' needs 'model_type' and 'source'")
    return base
