"""Fixtures for the SAM model tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.official_sam import Sam, official_tiny_sam


@pytest.fixture
def official_sam() -> Sam:
    return official_tiny_sam()


@pytest.fixture
def meta_pth(tmp_path: Path, official_sam: Sam) -> Path:
    """The official model saved the way Meta's released checkpoints are: `torch.save(state_dict)`."""
    path = tmp_path / "sam_tiny_meta.pth"
    torch.save(official_sam.state_dict(), path)
    return path
