"""The fused adapter kernel: one GEMM yields the frozen layer's output and the rank activations.

`h = W0 x + b0 + s * B (m * (A x))` is computed as `[h | u] = x [W0; A]^T + [b0; 0]`, then
`h + s * (m * u) B^T` as one `addmm`: `x` is read once, and one large GEMM replaces a large and a
thin one (thin GEMMs use a GPU poorly), so the adapter costs little more than its FLOPs.

The mask `m` is applied to every component (all rank spaces are multiplied, unselected ones by
zero): no row gathering, so no data-dependent shapes and no host-device synchronisation. The
price is compute: a GaRA layer always pays for all `R = r_low + r_high` components, `R / 3C` of a
SAM block's Linear FLOPs (7% for ViT-H at the default ranks), whatever the gates chose.

Gradients: autograd through `torch.cat([W0, A])` would compute the weight gradient of the whole
`[out + R, in]` matrix, `(3C + R) / R` times the work for `A` alone (15x for ViT-H's qkv).
`_BaseAndRank` computes the input gradient with the fused weight in one GEMM and the weight
gradient only for the tensors that need one (normally `A`; `W0` and `b0` stay frozen).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from garasam.kernels.rank_kernel import rank_update_


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a Linear on `x` computes in: autocast's when autocast is on, else `x`'s own."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


class _BaseAndRank(torch.autograd.Function):
    """`x [W0; A]^T + [b0; 0]` with gradients for exactly the inputs that require one."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        lora_a: torch.Tensor,
    ) -> torch.Tensor:
        dtype = compute_dtype(x)
        with torch.autocast(x.device.type, enabled=False):
            xc = x.to(dtype)
            fused_weight = torch.cat([weight.to(dtype), lora_a.to(dtype)])
            fused_bias = None
            if bias is not None:
                fused_bias = torch.cat([bias.to(dtype), bias.new_zeros(lora_a.shape[0], dtype=dtype)])
            y = F.linear(xc, fused_weight, fused_bias)
        ctx.save_for_backward(xc, fused_weight)
        ctx.out_features = weight.shape[0]
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype, lora_a.dtype)
        return y

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_y: torch.Tensor):  # type: ignore[override]
        xc, fused_weight = ctx.saved_tensors
        x_dtype, w_dtype, b_dtype, a_dtype = ctx.dtypes
        out = ctx.out_features
        grad_y = grad_y.to(xc.dtype)
        g = grad_y.reshape(-1, grad_y.shape[-1])
        x2 = xc.reshape(-1, xc.shape[-1])
        grad_x = grad_w = grad_b = grad_a = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad_y @ fused_weight).to(x_dtype)
        if ctx.needs_input_grad[1]:
            grad_w = (g[:, :out].t() @ x2).to(w_dtype)
        if ctx.needs_input_grad[2]:
            grad_b = g[:, :out].sum(0).to(b_dtype)
        if ctx.needs_input_grad[3]:
            grad_a = (g[:, out:].t() @ x2).to(a_dtype)
        return grad_x, grad_w, grad_b, grad_a


def fused_adapter_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    lora_a: torch.Tensor,
    lora_b: torch.Tensor,
    scale: float,
    mask: torch.Tensor | None,
    kernel: bool = False,
) -> torch.Tensor:
    """`W0 x + b0 + scale * B (mask * (A x))` with `[W0; A]` in one GEMM.

    `x` is `[rows, *tokens, in]`; `mask` is `[rows, R]` (one 0/1 decision per row and component,
    straight-through values in training) or None when every component is on. `kernel`: add the
    update with `garasam.kernels.rank_kernel` (switched-off components skipped, in place) whenever
    no gradient is needed; the result is then a strided view of the fused output.
    """
    out, rank = weight.shape[0], lora_a.shape[0]
    y = _BaseAndRank.apply(x, weight, bias, lora_a)
    flat = y.reshape(-1, out + rank)
    if kernel and not flat.requires_grad:
        return rank_update_(flat, out, mask, lora_b, scale).view(*x.shape[:-1], out)
    u = flat[:, out:]
    if mask is not None:
        rows = mask.shape[0]
        u = (u.view(rows, -1, rank) * mask.to(u.dtype).unsqueeze(1)).view(-1, rank)
    update = torch.addmm(flat[:, :out], u, lora_b.to(u.dtype).t(), alpha=scale)
    return update.view(*x.shape[:-1], out)
