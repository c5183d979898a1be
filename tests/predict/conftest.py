"""Fixtures for prediction tests: a tiny SAM with fixed random weights and small test images."""

import numpy as np
import pytest
import torch
from transformers import SamModel

from garasam.models.registry import sam_config


@pytest.fixture
def tiny_sam() -> SamModel:
    torch.manual_seed(0)
    return SamModel(sam_config("tiny")).eval()


@pytest.fixture
def image() -> np.ndarray:
    """A 90 x 140 RGB image: a bright rectangle on textured ground (not square, so padding matters)."""
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 80, (90, 140, 3), dtype=np.uint8)
    picture[20:70, 30:100] = (230, 200, 60)
    return picture
