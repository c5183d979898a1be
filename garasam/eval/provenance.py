"""What a result was measured on: each model's identity (adapters, backbone, checkpoint), the
dataset, the seed rule and the package versions, recorded in results.json."""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Sequence
from typing import Any

from torch import nn

from garasam.adapters import adapter_config, trainable_parameters
from garasam.adapters.io import backbone_identity
from garasam.models.registry import model_type_of_config

_PACKAGES = ("torch", "transformers", "numpy", "kornia", "opencv-python-headless", "scikit-image", "pillow")


SEED_RULE = "seed_for(image_id, degradation, severity, base_seed): SHA-256 of the four, first 4 bytes"


def model_identity(model: nn.Module) -> dict[str, Any]:
    """What a model is: its adapters (config, parameter count) and the backbone they sit on."""
    config = adapter_config(model)
    report = trainable_parameters(model)
    if config is None:
        backbone = {
            "model_type": model_type_of_config(model.config) or "custom",
            "checkpoint": getattr(model, "garasam_checkpoint", None),
        }
    else:
        backbone = backbone_identity(model, config)
    return {
        "adapter": None if config is None else config.to_dict(),
        "backbone": backbone,
        "parameters": report.total,
        "adapter_parameters": report.low_rank + report.gates,
    }


def package_versions() -> dict[str, str]:
    import garasam

    versions = {"python": platform.python_version(), "garasam": garasam.__version__}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def dataset_name_of(dataset: Sequence[Any]) -> str:
    """`reader:folder` for a reader: the default `dataset` column of results.csv."""
    root = getattr(dataset, "root", None)
    if root is None:
        return f"{len(dataset)} in-memory samples"
    return f"{getattr(dataset, 'name', type(dataset).__name__)}:{root.name}"
