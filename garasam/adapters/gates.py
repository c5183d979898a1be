"""Gate networks and the hard, straight-through gate functions of GaRA.

Training draws Gumbel noise and passes hard 0/1 decisions forward while the soft relaxation
carries the gradient back; evaluation is noiseless and deterministic (`sigmoid(alpha) > 0.5`).
"""

from __future__ import annotations

import torch
from torch import nn


def gate_mlp(in_features: int, hidden: int, out_features: int, num_layers: int) -> nn.Sequential:
    """An MLP of `num_layers` Linear layers with ReLU between them (default PyTorch init)."""
    widths = [in_features] + [hidden] * (num_layers - 1) + [out_features]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        if i:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(a, b))
    return nn.Sequential(*layers)


def pool_tokens(x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over every token axis: `[N, *tokens, C] -> [N, C]` (one gate input per window or image).

    `weights` (`[N, *tokens]`, 0/1) restricts each row's mean to its valid tokens; a row without any
    valid token (a window wholly in the padding) falls back to the mean of all its tokens.
    """
    if x.dim() <= 2:
        return x
    tokens = x.flatten(1, -2)
    if weights is None:
        return tokens.mean(dim=1)
    w = weights.flatten(1).to(tokens.dtype)
    count = w.sum(1, keepdim=True)
    w = torch.where(count > 0, w, torch.ones_like(w))
    return torch.einsum("nt,ntc->nc", w, tokens) / w.sum(1, keepdim=True)


def hard_sigmoid_gate(logits: torch.Tensor, tau: float, training: bool) -> torch.Tensor:
    """Binary gates: Gumbel-Sigmoid straight-through when training, `sigmoid(logits) > 0.5` otherwise."""
    if not training:
        return (logits > 0).to(logits.dtype)
    uniform = torch.rand_like(logits, dtype=torch.float32).clamp_(1e-6, 1 - 1e-6)
    gumbel = -torch.log(-torch.log(uniform))
    soft = torch.sigmoid((logits.float() + gumbel) / tau)
    hard = (soft > 0.5).to(soft.dtype)
    # soft + (hard - soft) is exactly hard in floating point (Sterbenz), unlike hard + soft - soft.
    return (soft + (hard - soft).detach()).to(logits.dtype)


def hard_softmax_gate(logits: torch.Tensor, tau: float, training: bool) -> torch.Tensor:
    """One-hot choice among experts: Gumbel-softmax straight-through in training, argmax otherwise."""
    if not training:
        return nn.functional.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)
    return nn.functional.gumbel_softmax(logits.float(), tau=tau, hard=True).to(logits.dtype)


def random_gate(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """Bernoulli(0.5) decisions for the random-gating ablation (no learned gate)."""
    return torch.randint(0, 2, shape, device=like.device).to(like.dtype)
