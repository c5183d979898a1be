"""`GaraSam.from_pretrained` / `save_pretrained`: a SAM with adapters as one folder, Hugging Face style.

The folder is an adapter folder (`adapter_config.json` + `adapter_model.safetensors`, as
`save_adapters` writes them); its config names the base SAM by Hub id or path together with its
size and sha256 prefix, never a copy of its weights, so a ViT-H adapter folder stays a few MB.
`from_pretrained` takes such a folder, its Hub id (resolved through the local Hugging Face cache),
or a plain SAM checkpoint (then without adapters). Folders of garasam 0.1.0 named their base in a
separate `garasam.json`; they still load.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from transformers import SamModel

from garasam.adapters import read_adapter_config
from garasam.adapters.save import CONFIG_NAME, save_pretrained
from garasam.assembly.build import ModelSpec, build_model
from garasam.errors import CheckpointError
from garasam.models.hub import infer_model_type, is_hub_id
from garasam.models.hub import resolve as resolve_hub_id

LEGACY_CONFIG_NAME = "garasam.json"


class GaraSam:
    """Namespace of the two calls; the model itself is transformers' `SamModel`."""

    @staticmethod
    def save_pretrained(model: SamModel, directory: str | os.PathLike) -> Path:
        """Adapters + a reference to the base checkpoint the model was built from."""
        return save_pretrained(model, directory)

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
            return build_model(ModelSpec(model_type, folder), device=device)
        base, record = _read_base(folder)
        source = base["source"]
        if not is_hub_id(source) and not Path(source).exists():
            raise CheckpointError(
                f"{record}: the base checkpoint {source} is not there; put it back, or build the "
                f"base yourself (sha256 {base.get('sha256')}...) and call garasam.load_adapters(model, {str(folder)!r})"
            )
        model = build_model(ModelSpec(base["model_type"], source), device=device)
        found = model.garasam_checkpoint  # build_sam hashed the weights already
        if found["sha256"] != base.get("sha256"):
            raise CheckpointError(
                f"{record}: {source} has sha256 {found['sha256']}..., the adapters were saved "
                f"on {base.get('sha256')}...: another checkpoint"
            )
        return build_model(ModelSpec(adapters=folder), base=model, trainable=trainable)


def _read_base(folder: Path) -> tuple[dict[str, Any], Path]:
    """The base checkpoint a folder names ({model_type, source, sha256, ...}) and the file naming it."""
    legacy = folder / LEGACY_CONFIG_NAME
    if legacy.is_file():
        try:
            record = json.loads(legacy.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise CheckpointError(f"{legacy}: unreadable ({err})") from None
        base = record.get("base") if isinstance(record, dict) else None
        path = legacy
    else:
        backbone = read_adapter_config(folder)["backbone"]
        checkpoint = backbone.get("checkpoint") if isinstance(backbone, dict) else None
        base = (
            {**checkpoint, "model_type": backbone.get("model_type")} if isinstance(checkpoint, dict) else None
        )
        path = folder / CONFIG_NAME
    if not isinstance(base, dict) or not isinstance(base.get("source"), str):
        raise CheckpointError(
            f"{path}: names no base checkpoint to build (its adapters were saved on a SAM with random or "
            f"bundled weights); build the base yourself and call garasam.load_adapters(model, {str(folder)!r})"
        )
    if not isinstance(base.get("model_type"), str):
        raise CheckpointError(f"{path}: the base checkpoint has no model type")
    return base, path
