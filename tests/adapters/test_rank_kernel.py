"""The Triton rank update (garasam.kernels.rank_kernel) computes the masked update, skips what no row
uses, and serves the fast encoder at inference. On a CPU it runs in Triton's interpreter."""

from __future__ import annotations

import copy

import pytest
import torch

from garasam.adapters import GaRAConfig, LoRAConfig, MoELoRAConfig, adapter_layers
from garasam.errors import ConfigError
from garasam.fast.encoder import optimize_sam
from garasam.kernels import rank_kernel as kernels
from garasam.kernels.rank_kernel import rank_update_
from tests.models.test_fast import FP32_TOLERANCE, _predict, _rel, _tiny_sam

pytest.importorskip("triton")  # on a CPU, tests/conftest.py switches Triton to its interpreter
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _gara_mask(rows: int, low: int = 16, high: int = 256, seed: int = 0) -> torch.Tensor:
    """Odd rows choose the high space, even rows the low one; about a third of components switched off."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(rows, low + high)
    for row in range(rows):
        cols = slice(low, low + high) if row % 2 else slice(0, low)
        width = cols.stop - cols.start
        mask[row, cols] = (torch.rand(width, generator=generator) > 0.3).float()
    return mask


def _expected(y: torch.Tensor, out: int, mask: torch.Tensor | None, lora_b: torch.Tensor, scale: float):  # noqa: ANN202
    u = y[:, out:].double()
    if mask is not None:
        rows = mask.shape[0]
        u = (u.view(rows, -1, u.shape[-1]) * mask.double()[:, None]).view(-1, u.shape[-1])
    return (y[:, :out].double() + scale * u @ lora_b.double().T).float()


# Triton 3.9's CPU interpreter computes bf16 arithmetic wrongly (a bf16 product of two normal numbers
# comes back near 1e37), so bf16 is checked on a GPU only; fp16 exercises the half-precision path here.
HALF = [
    torch.float16,
    pytest.param(
        torch.bfloat16,
        marks=pytest.mark.skipif(DEVICE == "cpu", reason="Triton's interpreter miscomputes bf16"),
    ),
]


@pytest.mark.parametrize("dtype", HALF)
def test_half_precision_accumulates_in_float32(dtype: torch.dtype) -> None:
    rows, tokens_per_row, out = 4, 49, 192
    generator = torch.Generator().manual_seed(5)
    y = torch.randn(rows * tokens_per_row, out + 272, generator=generator).to(dtype)
    lora_b = (0.05 * torch.randn(out, 272, generator=generator)).to(dtype)
    mask = _gara_mask(rows)
    expected = _expected(y.float(), out, mask, lora_b.float(), 0.5)
    got = rank_update_(y.to(DEVICE), out, mask.to(DEVICE), lora_b.to(DEVICE), 0.5).float().cpu()
    assert _rel(got, expected) < (2e-3 if dtype == torch.float16 else 1e-2)


@pytest.mark.parametrize(
    ("rows", "tokens_per_row", "out", "mask_kind"),
    [
        (6, 50, 200, "gara"),  # tiles straddle rows; out not a multiple of the tile
        (2, 196, 384, "gara"),  # windows of 14 x 14
        (3, 40, 130, "moe"),  # 402 components: not a multiple of the component block
        (4, 33, 96, "none"),  # LoRA: every component on
    ],
)
def test_kernel_equals_the_masked_update(rows: int, tokens_per_row: int, out: int, mask_kind: str) -> None:
    generator = torch.Generator().manual_seed(rows)
    rank = 402 if mask_kind == "moe" else 272
    y = torch.randn(rows * tokens_per_row, out + rank, generator=generator)
    lora_b = torch.randn(out, rank, generator=generator)
    if mask_kind == "gara":
        mask = _gara_mask(rows)
    elif mask_kind == "moe":
        choice = torch.arange(rows) % 4
        bounds = torch.tensor([0, 2, 18, 146, 402])
        cols = torch.arange(rank)
        mask = ((cols >= bounds[choice, None]) & (cols < bounds[choice + 1, None])).float()
    else:
        mask = None
    expected = _expected(y, out, mask, lora_b, 0.7).to(DEVICE)
    y, lora_b = y.to(DEVICE), lora_b.to(DEVICE)
    got = rank_update_(y, out, mask if mask is None else mask.to(DEVICE), lora_b, 0.7)
    assert got.data_ptr() == y.data_ptr()  # in place: the view of y's first `out` columns
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-4)
    assert torch.equal(y[:, :out], got)


def test_blocks_no_row_uses_are_never_read() -> None:
    """Every window chose the low space: the high space's activations are poison, yet the result is
    finite and exact, so the kernel never touched them (a masked multiply would give NaN)."""
    rows, tokens_per_row, out = 4, 70, 160
    y = torch.randn(rows * tokens_per_row, out + 272)
    mask = _gara_mask(rows)
    mask[1::2] = 0
    mask[1::2, :16] = 1  # every row low
    lora_b = torch.randn(out, 272)
    expected = _expected(y, out, mask, lora_b, 1.0).to(DEVICE)
    y[:, out + 16 :] = float("nan")
    got = rank_update_(y.to(DEVICE), out, mask.to(DEVICE), lora_b.to(DEVICE), 1.0)
    assert torch.isfinite(got).all()
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("kind", ["gara", "lora", "moe_lora"])
@pytest.mark.usefixtures("large_tiles")
def test_fast_encoder_with_the_kernel_matches_the_reference(kind: str) -> None:
    pixels = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    config = {"gara": GaRAConfig(), "lora": LoRAConfig(rank=16), "moe_lora": MoELoRAConfig()}[kind]
    reference = _tiny_sam(config, pixels).to(DEVICE)
    pixels = pixels.to(DEVICE)
    fast = optimize_sam(copy.deepcopy(reference), dtype=torch.float32, rank_kernel=True)
    expected, got = _predict(reference, pixels), _predict(fast, pixels)
    for out, ref in zip(got[:3], expected[:3], strict=True):
        assert _rel(out, ref) < FP32_TOLERANCE
    for name, state in got[3].items():
        if state is not None:
            assert torch.equal(state.segment, expected[3][name].segment)


@pytest.mark.usefixtures("large_tiles")
@pytest.mark.skipif(DEVICE == "cpu", reason="bf16: Triton's interpreter miscomputes it")
def test_bf16_encoder_with_the_kernel_matches_the_torch_path() -> None:
    pixels = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    reference = _tiny_sam(GaRAConfig(), pixels.cpu()).to(DEVICE)
    torch_path = optimize_sam(copy.deepcopy(reference))
    kernel = optimize_sam(copy.deepcopy(reference), rank_kernel=True)
    expected, got = _predict(torch_path, pixels), _predict(kernel, pixels)
    assert _rel(got[0], expected[0]) < 2e-2
    decisions = [torch.equal(s.segment, expected[3][n].segment) for n, s in got[3].items()]
    assert sum(decisions) >= 0.9 * len(decisions)


@pytest.mark.usefixtures("large_tiles")
def test_training_keeps_the_differentiable_path() -> None:
    pixels = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    model = _tiny_sam(GaRAConfig(), pixels).to(DEVICE)
    model = optimize_sam(model, dtype=torch.float32, rank_kernel=True).train()
    model.vision_encoder(pixels.to(DEVICE)).last_hidden_state.square().mean().backward()
    grads = [layer.lora_B.grad for layer in adapter_layers(model).values()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_the_kernel_is_refused_where_it_cannot_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not kernels.available("cpu")
    with pytest.raises(ConfigError, match="rank_kernel=True needs Triton"):
        optimize_sam(_tiny_sam(GaRAConfig(), torch.zeros(1, 3, 256, 256)), rank_kernel=True)


def test_rank_kernel_takes_a_bool() -> None:
    with pytest.raises(ConfigError, match="rank_kernel must be True or False"):
        optimize_sam(_tiny_sam(GaRAConfig(), torch.zeros(1, 3, 256, 256)), rank_kernel="yes")


def test_bad_arguments_are_named() -> None:
    y = torch.randn(20, 48)
    with pytest.raises(ValueError, match="contiguous"):
        rank_update_(y[:, :40], 24, None, torch.randn(24, 16), 1.0)
    with pytest.raises(ValueError, match="lora_b is"):
        rank_update_(y, 32, None, torch.randn(32, 8), 1.0)
    with pytest.raises(ValueError, match="does not fit"):
        rank_update_(y, 32, torch.ones(3, 16), torch.randn(32, 16), 1.0)
