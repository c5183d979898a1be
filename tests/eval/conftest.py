"""Fixtures for evaluation tests: the tiny SAM (seeded) and a few small synthetic scenes."""

from __future__ import annotations

import warnings

import pytest
import torch
from transformers import SamModel

from garasam.data.readers import Sample
from garasam.data.synthetic import generate_scene

# Two degradations keep the protocol tests fast: one photometric, one geometric (warps the masks).
DEGRADATIONS = ("gauss_noise", "elastic_transform")


def tiny_sam(seed: int = 0) -> SamModel:
    """The tiny SAM as `build_sam` makes it: bundled weights, or a seeded random init until they exist.

    (A bare `SamModel(sam_config("tiny"))` uses transformers' init, whose image embeddings are ~1e-20
    and do not depend on the image, which would make every comparison below vacuous.)
    """
    from garasam.models import build_sam

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "bundled tiny weights missing" until they are trained
        return build_sam("tiny")


def scenes(count: int = 3, size: tuple[int, int] = (64, 80)) -> list[Sample]:
    return [generate_scene(seed, size=size, split="test", num_objects=(1, 3)) for seed in range(count)]


@pytest.fixture
def samples() -> list[Sample]:
    return scenes()
