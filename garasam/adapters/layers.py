"""Adapter layers: a frozen base Linear plus gated rank-1 components.

Every adapter stores its components as one `lora_A` [R, in] and one `lora_B` [out, R] matrix whose
rows/columns are grouped into *segments*: GaRA's low and high rank spaces, MoE-LoRA's experts, or a
single segment for LoRA. Training evaluates every segment under a 0/1 mask so all gates get a
gradient; evaluation multiplies only the segment each row (window or image) selected.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from garasam.adapters.config import AdapterConfig, GaRAConfig, LoRAConfig, MoELoRAConfig
from garasam.adapters.gates import (
    gate_mlp,
    hard_sigmoid_gate,
    hard_softmax_gate,
    pool_tokens,
    random_gate,
)


@dataclass(frozen=True)
class GateState:
    """Decisions of one adapter in its last forward, one entry per gate input row.

    Rows are windows in windowed blocks (batch-major) and images in global blocks.
    `segment` is the chosen space (0 = low, 1 = high) or expert; `active` the number of active
    components in it, i.e. the effective rank of the update for that row.
    """

    segment: torch.Tensor
    active: torch.Tensor


class AdapterLinear(nn.Module):
    """Base class: `h = W0 x + b0 + scale * B (m * (A x))` with components grouped in segments."""

    def __init__(self, base: nn.Linear, segment_ranks: tuple[int, ...], scale: float) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)  # the adapted layer stays frozen
        self.segment_ranks = tuple(segment_ranks)
        self.scale = scale
        rank = sum(self.segment_ranks)
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, **factory))
        if base.weight.device.type != "meta":
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.gate_state: GateState | None = None

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def segment_slices(self) -> list[slice]:
        """Column ranges of `lora_A` rows / `lora_B` columns belonging to each segment."""
        bounds = [0]
        for r in self.segment_ranks:
            bounds.append(bounds[-1] + r)
        return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * self.delta(x)

    def delta(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _masked_delta(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """All components, each row's activations multiplied by its 0/1 mask `[rows, R]`."""
        u = F.linear(x, self.lora_A.to(x.dtype))
        if mask is not None:
            u = u * _per_row(mask, x)
        return F.linear(u, self.lora_B.to(x.dtype))

    def _selected_delta(
        self, x: torch.Tensor, segment: torch.Tensor, masks: list[torch.Tensor | None]
    ) -> torch.Tensor:
        """Only the segment each row selected: rows are grouped by choice, other segments untouched."""
        out = x.new_zeros(*x.shape[:-1], self.out_features)
        for index, cols in enumerate(self.segment_slices()):
            rows = (segment == index).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            whole = rows.numel() == x.shape[0]
            xs = x if whole else x.index_select(0, rows)
            u = F.linear(xs, self.lora_A[cols].to(x.dtype))
            if masks[index] is not None:
                m = masks[index] if whole else masks[index].index_select(0, rows)
                u = u * _per_row(m, xs)
            update = F.linear(u, self.lora_B[:, cols].to(x.dtype))
            if whole:
                return update
            out.index_copy_(0, rows, update)
        return out

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.out_features}, ranks={self.segment_ranks}, scale={self.scale}"
        )


class LoRALinear(AdapterLinear):
    """Fixed-rank LoRA: every component always on."""

    def __init__(self, base: nn.Linear, config: LoRAConfig) -> None:
        super().__init__(base, (config.rank,), config.scale)
        self.config = config

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        return self._masked_delta(x, None)


class GaRALinear(AdapterLinear):
    """Gated-rank adapter: gate 1 picks the low or high space, gate 2 switches its components."""

    def __init__(self, base: nn.Linear, config: GaRAConfig) -> None:
        super().__init__(base, config.space_ranks, config.scale)
        self.config = config
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        c = base.in_features
        self.space_gate = None
        self.component_gates = None
        if config.gating in ("gated", "space_only"):
            self.space_gate = gate_mlp(c, config.space_gate_hidden, 1, config.space_gate_layers).to(**factory)
        if config.gating in ("gated", "unified"):
            self.component_gates = nn.ModuleList(
                gate_mlp(c, config.component_gate_hidden, r, config.component_gate_layers).to(**factory)
                for r in self.segment_ranks
            )

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        pooled = pool_tokens(x)
        rows = pooled.shape[0]
        training = self.training
        tau = self.config.tau
        gating = self.config.gating

        if gating == "unified":
            space = None
        elif gating == "random":
            space = random_gate((rows,), pooled)
        else:
            space = hard_sigmoid_gate(self.space_gate(pooled).squeeze(-1), tau, training)

        if self.component_gates is not None:
            comps = [hard_sigmoid_gate(g(pooled), tau, training) for g in self.component_gates]
        elif gating == "random":
            comps = [random_gate((rows, r), pooled) for r in self.segment_ranks]
        else:
            comps = [None] * len(self.segment_ranks)

        segment = torch.zeros(rows, dtype=torch.long, device=x.device) if space is None else space.long()
        counts = [
            c.sum(-1) if c is not None else torch.full((rows,), r, device=x.device, dtype=pooled.dtype)
            for c, r in zip(comps, self.segment_ranks, strict=True)
        ]
        active = counts[0] if space is None else torch.where(segment.bool(), counts[1], counts[0])
        self.gate_state = GateState(segment=segment.detach(), active=active.detach().round().long())

        if not training and gating != "random":
            return self._selected_delta(x, segment, comps)
        weights = [torch.ones_like(pooled[:, 0])] if space is None else [1 - space, space]
        mask = torch.cat(
            [
                w[:, None]
                * (c if c is not None else torch.ones(rows, r, device=x.device, dtype=pooled.dtype))
                for w, c, r in zip(weights, comps, self.segment_ranks, strict=True)
            ],
            dim=-1,
        )
        return self._masked_delta(x, mask)


class MoELoRALinear(AdapterLinear):
    """LoRA experts of fixed ranks; one shared gate chooses one expert per row."""

    def __init__(self, base: nn.Linear, config: MoELoRAConfig) -> None:
        super().__init__(base, config.expert_ranks, config.scale)
        self.config = config
        self.gate = gate_mlp(
            base.in_features, config.gate_hidden, len(config.expert_ranks), config.gate_layers
        ).to(device=base.weight.device, dtype=base.weight.dtype)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        choice = hard_softmax_gate(self.gate(pool_tokens(x)), self.config.tau, self.training)
        segment = choice.argmax(-1)
        ranks = torch.tensor(self.segment_ranks, device=x.device)
        self.gate_state = GateState(segment=segment.detach(), active=ranks[segment])
        if not self.training:
            return self._selected_delta(x, segment, [None] * len(self.segment_ranks))
        ranks_list = list(self.segment_ranks)
        mask = torch.repeat_interleave(choice, torch.tensor(ranks_list, device=x.device), dim=-1)
        return self._masked_delta(x, mask)


LAYER_TYPES: dict[str, type[AdapterLinear]] = {
    "lora": LoRALinear,
    "gara": GaRALinear,
    "moe_lora": MoELoRALinear,
}


def make_adapter(base: nn.Linear, config: AdapterConfig) -> AdapterLinear:
    """Wrap `base` in the adapter layer that `config` describes."""
    return LAYER_TYPES[config.adapter_type](base, config)


def _per_row(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a `[rows, R]` mask over the token axes of `x` (`[rows, *tokens, C]`)."""
    return mask.to(x.dtype).view(mask.shape[0], *([1] * (x.dim() - 2)), mask.shape[-1])
