"""Shared test settings: CPU only, small thread count, deterministic seeds."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))
if not torch.cuda.is_available():
    # Triton kernels (garasam.kernels.rank_kernel) run in Triton's CPU interpreter: the flag must be
    # set before anything imports triton (transformers does, and importing torch does not).
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def large_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole models through garasam.kernels.rank_kernel in Triton's interpreter in fewer, larger
    tiles (about 6x faster on a CPU); tests/adapters/test_rank_kernel.py checks the real tiling."""
    if not torch.cuda.is_available():
        from garasam.kernels import rank_kernel

        monkeypatch.setattr(rank_kernel, "BLOCK_M", 256)
        monkeypatch.setattr(rank_kernel, "BLOCK_N", 512)


@pytest.fixture
def pixels() -> torch.Tensor:
    """One normalised 256 x 256 input for the tiny SAM."""
    return torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(3))


def embeddings(model: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """The image encoder's output: what adapters change, compared across save and load paths."""
    with torch.no_grad():
        return model.get_image_embeddings(pixels)
