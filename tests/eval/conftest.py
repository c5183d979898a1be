"""Fixtures for evaluation tests: the tiny SAM (seeded) and a few small synthetic scenes."""

from __future__ import annotations

import pytest
import torch
from transformers import SamModel

from garasam.data.readers import Sample
from garasam.data.synthetic import generate_scene

# Two degradations keep the protocol tests fast: one photometric, one geometric (warps the masks).
DEGRADATIONS = ("gauss_noise", "elastic_transform")


def tiny_sam(seed: int | None = None) -> SamModel:
    """The bundled tiny SAM, or with a `seed` a seeded random tiny SAM (two seeds, two different models).

    (A bare `SamModel(sam_config("tiny"))` uses transformers' init, whose image embeddings are ~1e-20
    and do not depend on the image, which would make every comparison below vacuous.)
    """
    from garasam.models import build_sam

    if seed is None:
        return build_sam("tiny")
    torch.manual_seed(seed)
    return build_sam("tiny", pretrained=False)


def scenes(count: int = 3, size: tuple[int, int] = (64, 80)) -> list[Sample]:
    return [
        generate_scene(seed, size=size, family="target", split="test", num_objects=(1, 3))
        for seed in range(count)
    ]


@pytest.fixture
def samples() -> list[Sample]:
    return scenes()
