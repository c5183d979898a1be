"""Fixtures for adapter tests: a tiny randomly initialised SamModel and a prompt batch."""

import pytest
import torch
from transformers import SamModel

from garasam.models.registry import sam_config


@pytest.fixture
def tiny_sam() -> SamModel:
    torch.manual_seed(0)
    return SamModel(sam_config("tiny")).eval()


@pytest.fixture
def sam_inputs() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return {
        "pixel_values": torch.randn(2, 3, 256, 256, generator=generator),
        "input_points": torch.tensor([[[[100.0, 120.0]]], [[[50.0, 60.0]]]]),
    }


def randomize_b(model: torch.nn.Module, std: float = 0.05) -> None:
    """Give every adapter a non-zero B so that its update (and the gates' gradient) is non-zero."""
    from garasam.adapters import adapter_layers

    with torch.no_grad():
        for layer in adapter_layers(model).values():
            layer.lora_B.normal_(0, std)
