"""The adapters' rank update at inference as one Triton kernel that skips switched-off components.

After the fused GEMM (`garasam.kernels.fused`) a layer holds `y = [h | u]`: the frozen layer's
output and the rank activations of every component. The torch path then multiplies `u` by the
gates' mask, copies `h` out of the strided slice and adds `s (m * u) B^T` with `addmm`: every
component of both GaRA spaces is multiplied, whatever the gates chose, and `h` makes two extra
trips through memory.

`rank_update_` adds `s (m * u) B^T` into `h` in place, inside `y`, and for each tile of tokens skips
every block of components that no row (window or image) of the tile has switched on. GaRA's low
space is the first 16 components, its high space the next 256: a tile whose windows all chose the
low space computes one block of 16 components instead of 17. The skip is decided on the device,
inside the kernel, so the host never waits and a CUDA graph can hold it. Inference only (no
backward); training needs both spaces anyway, for the space gate's gradient.

Tests run the kernel on the CPU through Triton's interpreter (`TRITON_INTERPRET=1`); on a GPU it is
compiled. `available(device)` says whether it can run there.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Callable

import torch

BLOCK_M, BLOCK_N, BLOCK_K = 64, 128, 16  # BLOCK_K = GaRA's r_low: the low space is one block


def interpreting() -> bool:
    """Whether Triton runs kernels in its CPU interpreter (`TRITON_INTERPRET=1`)."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def available(device: torch.device | str) -> bool:
    """Whether `rank_update_` can run on `device`: Triton installed, and CUDA or the interpreter."""
    if importlib.util.find_spec("triton") is None:
        return False
    kind = torch.device(device).type
    return (kind == "cuda" and torch.cuda.is_available()) or (kind == "cpu" and interpreting())


def rank_update_(
    y: torch.Tensor,
    out_features: int,
    mask: torch.Tensor | None,
    lora_b: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """`y[:, :out] += scale * (mask * y[:, out:]) @ lora_b.T`, in place; returns the `y[:, :out]` view.

    `y` is `[tokens, out + R]`, contiguous, its tokens row-major in `rows` equal groups (windows or
    images); `mask` is `[rows, R]` 0/1 (None: every component on); `lora_b` is `[out, R]`.
    """
    tokens, width = y.shape
    rank = width - out_features
    if y.stride(1) != 1 or y.stride(0) != width:
        raise ValueError(
            f"rank_update_ needs a contiguous [tokens, out + R] tensor, got strides {y.stride()}"
        )
    if tuple(lora_b.shape) != (out_features, rank):
        raise ValueError(f"lora_b is {tuple(lora_b.shape)}, expected {(out_features, rank)}")
    rows = 1 if mask is None else mask.shape[0]
    if mask is not None and (mask.shape[1] != rank or tokens % rows):
        raise ValueError(f"mask {tuple(mask.shape)} does not fit {tokens} tokens and {rank} components")
    lora_b = lora_b.to(y.dtype).contiguous()
    mask = y.new_ones(1, rank) if mask is None else mask.to(y.dtype).contiguous()  # None: one row, all on
    grid = (_cdiv(tokens, BLOCK_M), _cdiv(out_features, BLOCK_N))
    _kernel(interpreting())[grid](
        y,
        mask,
        lora_b,
        tokens,
        out_features,
        rank,
        tokens // rows,
        float(scale),
        IEEE=y.dtype == torch.float32,
        BLOCK_M=BLOCK_M,
        BLOCK_N=BLOCK_N,
        BLOCK_K=BLOCK_K,
    )
    return y[:, :out_features]


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@functools.cache
def _kernel(interpret: bool) -> Callable:  # noqa: ARG001 - the cache key: triton.jit reads the flag
    """The jitted kernel, built on first use so that `TRITON_INTERPRET` is read when it is needed."""
    import triton
    import triton.language as tl

    @triton.jit
    def kernel(
        y_ptr,
        mask_ptr,
        b_ptr,
        tokens,
        out_features,
        rank,
        tokens_per_row,
        scale,
        IEEE: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr,
    ):
        stride = out_features + rank
        offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        in_m = offs_m < tokens
        in_n = offs_n < out_features
        owner = offs_m // tokens_per_row  # the gate row (window or image) of each token
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, rank, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            in_k = offs_k < rank
            tile = in_m[:, None] & in_k[None, :]
            on = tl.load(mask_ptr + owner[:, None] * rank + offs_k[None, :], mask=tile, other=0.0)
            if tl.max(tl.max(on, axis=1), axis=0) > 0:  # some row of the tile uses this block
                u = tl.load(
                    y_ptr + offs_m[:, None] * stride + out_features + offs_k[None, :], mask=tile, other=0.0
                )
                b = tl.load(
                    b_ptr + offs_n[None, :] * rank + offs_k[:, None],
                    mask=in_k[:, None] & in_n[None, :],
                    other=0.0,
                )
                if IEEE:
                    acc += tl.dot(u * on, b, input_precision="ieee")
                else:
                    acc += tl.dot(u * on, b)
        out = y_ptr + offs_m[:, None] * stride + offs_n[None, :]
        keep = in_m[:, None] & in_n[None, :]
        h = tl.load(out, mask=keep, other=0.0)
        tl.store(out, (h.to(tl.float32) + scale * acc).to(h.dtype), mask=keep)

    return kernel
