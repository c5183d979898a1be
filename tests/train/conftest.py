"""Fixtures for training tests: tiny synthetic scenes, a tiny SAM that reacts to its adapters, configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from transformers import SamModel

from garasam.data.synthetic import write_scenes
from garasam.models.checkpoint import save_sam
from garasam.models.registry import sam_config
from garasam.train.config import TrainConfig, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="session")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Six 64 x 64 synthetic scenes in the Robust-Seg layout, as a `robustseg:` spec."""
    root = tmp_path_factory.mktemp("scenes")
    write_scenes(root, num=6, seed=0, size=(64, 64))
    return f"robustseg:{root}"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random tiny SAM weights with PyTorch's default (fan-in scaled) init.

    transformers' init (std 0.02) makes a random decoder's masks all but independent of the image,
    so no adapter could lower the loss; fan-in scaling keeps the signal alive through the network.
    """
    torch.manual_seed(0)
    model = SamModel(sam_config("tiny"))
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
            module.reset_parameters()
    path = tmp_path_factory.mktemp("sam") / "tiny.safetensors"
    save_sam(model, path)
    return path


def fast_overrides(output: Path, data: str, checkpoint: Path) -> list[str]:
    """Settings that keep a tiny run to well under a second per step on a CPU."""
    return [
        f"output_dir='{output}'",
        f"data.train=['{data}']",
        f"model.checkpoint='{checkpoint}'",
        "run.batch_size=2",
        "run.num_workers=0",
        "run.device=cpu",
        "run.deterministic=true",
        "data.max_objects_per_image=2",
        "validation.fraction=0",
        "logging.progress=false",
        "logging.tensorboard=false",
        "logging.every_steps=1",
    ]


@pytest.fixture
def make_config(tmp_path: Path, scenes: str, tiny_checkpoint: Path):
    """`make_config(*overrides, recipe="tiny_gara.yaml", output=None)` -> a fast TrainConfig."""

    def make(*overrides: str, recipe: str = "tiny_gara.yaml", output: Path | None = None) -> TrainConfig:
        base = fast_overrides(output or tmp_path / "run", scenes, tiny_checkpoint)
        return load_config(CONFIGS / recipe, [*base, *overrides])

    return make
