"""Adapter layers: a frozen base Linear plus gated rank-1 components.

Every adapter stores its components as one `lora_A` [R, in] and one `lora_B` [out, R] matrix whose
rows/columns are grouped into *segments*: GaRA's low and high rank spaces, MoE-LoRA's experts, or a
single segment for LoRA. Training evaluates every segment under a 0/1 mask so all gates get a
gradient; evaluation multiplies only the segment each row (window or image) selected.

Two execution paths compute the same function. The reference path (default) runs the base Linear
and the update separately and, in evaluation, gathers the rows of each segment: least compute, but
`.nonzero()` synchronises with the device and the shapes depend on the data. The fused path
(`layer.fused = True`, set by `garasam.fast.encoder.optimize_sam`) runs `[W0; A]` as one GEMM and
masks unselected components instead of gathering rows (`garasam.kernels.fused`): fixed shapes, no
synchronisation, compilable, at the price of always multiplying every component.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
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
from garasam.kernels.fused import fused_adapter_linear


@dataclass(frozen=True)
class GateState:
    """Decisions of one adapter in its last forward, one entry per gate input row.

    Rows are windows in windowed blocks (batch-major) and images in global blocks.
    `segment` is the chosen space (0 = low, 1 = high) or expert; `active` the number of active
    components in it, i.e. the effective rank of the update for that row.
    """

    segment: torch.Tensor
    active: torch.Tensor
    # True when the tensors are a CUDA graph's outputs, which its next replay overwrites
    owned_by_graph: bool = False


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
        # (patch grid side, window size or 0 for a global block, patch size) of the encoder block this
        # layer sits in, set by the injector; None when unknown (then every token counts in the gates).
        self.token_grid: tuple[int, int, int] | None = None
        # [B, G, G] bool: the tokens of each image that hold image content (`valid_input_sizes`); a
        # plain attribute, not a buffer, so DDP never broadcasts one rank's images to the others.
        self.valid_tokens: torch.Tensor | None = None
        self.fused = False  # see the module docstring: one GEMM, masked components, no host sync
        self.rank_kernel = False  # fused path at inference: garasam.kernels.rank_kernel adds the update
        self.disabled = False  # garasam.adapters.disable_adapters: compute as the frozen layer

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

    def gate_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the gate networks (neither the frozen base nor A/B)."""
        for name, param in self.named_parameters():
            if not name.startswith(("base.", "lora_")):
                yield param

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.disabled:
            return self.base(x)
        if self.fused:
            mask = self.component_mask(x)
            return fused_adapter_linear(
                x,
                self.base.weight,
                self.base.bias,
                self.lora_A,
                self.lora_B,
                self.scale,
                mask,
                self.rank_kernel,
            )
        return self.base(x) + self.scale * self.delta(x)

    def delta(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """The reference update `B (m * (A x))`; evaluation touches only the selected segments."""
        raise NotImplementedError

    def component_mask(self, x: torch.Tensor) -> torch.Tensor | None:  # pragma: no cover - abstract
        """Run the gates on `x`, record `gate_state`, and return the `[rows, R]` component mask.

        Hard 0/1 values (straight-through in training); None when every component is always on.
        """
        raise NotImplementedError

    def _gate_input(self, x: torch.Tensor, gate: nn.Sequential | None) -> torch.Tensor:
        """Mean-pooled tokens in `gate`'s dtype: gates may stay float32 beside a bf16 backbone."""
        pooled = pool_tokens(x, self._token_weights(x))
        return pooled if gate is None else pooled.to(gate[0].weight.dtype)

    def _token_weights(self, x: torch.Tensor) -> torch.Tensor | None:
        """`[rows, *tokens]` validity of the gate input's tokens, or None when every token counts.

        Invalid: the zero padding that makes edge windows whole, and the tokens of the padded area
        of a non-square image (when `valid_input_sizes` told the layer where the image ends).
        """
        config = getattr(self, "config", None)
        if self.token_grid is None or x.dim() != 4 or getattr(config, "gate_pooling", "all") != "valid":
            return None
        grid, window, _ = self.token_grid
        rows, height, width = x.shape[:3]
        valid = self.valid_tokens
        if window == 0:  # a global block: one row per image
            ok = (height, width) == (grid, grid) and valid is not None and valid.shape[0] == rows
            return valid if ok else None
        per_side = -(-grid // window)
        if (height, width) != (window, window) or rows % (per_side * per_side):
            return None
        images = rows // (per_side * per_side)
        if valid is None or valid.shape[0] != images:
            if grid % window == 0:
                return None
            valid = torch.ones(1, grid, grid, dtype=torch.bool, device=x.device).expand(images, -1, -1)
        pad = per_side * window - grid
        padded = F.pad(valid, (0, pad, 0, pad))  # False where window_partition pads with zeros
        return (
            padded.view(images, per_side, window, per_side, window)
            .permute(0, 1, 3, 2, 4)
            .reshape(rows, window, window)
        )

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
        out = None  # allocated in the updates' dtype: under autocast that is not the input's
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
            if out is None:
                out = update.new_zeros(*x.shape[:-1], self.out_features)
            out.index_copy_(0, rows, update)
        return out if out is not None else x.new_zeros(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in={self.in_features}, out={self.out_features}, ranks={self.segment_ranks}, "
            f"scale={self.scale}, fused={self.fused}, rank_kernel={self.rank_kernel}"
        )


class LoRALinear(AdapterLinear):
    """Fixed-rank LoRA: every component always on."""

    def __init__(self, base: nn.Linear, config: LoRAConfig) -> None:
        super().__init__(base, (config.rank,), config.scale)
        self.config = config

    def component_mask(self, x: torch.Tensor) -> None:
        return None

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        return self._masked_delta(x, None)


@dataclass(frozen=True)
class _GaRADecision:
    """The gates' outputs for one forward, as the reference and the fused path each need them."""

    segment: torch.Tensor  # [rows] chosen space, long
    components: list[torch.Tensor | None]  # per space [rows, r] 0/1 switches, None = all on
    mask: torch.Tensor  # [rows, R]: (1 - z_space) * z_low | z_space * z_high (one-hot over N spaces)


class GaRALinear(AdapterLinear):
    """Gated-rank adapter: gate 1 picks the low or high space, gate 2 switches its components.

    With more than two spaces (`r_mid`), gate 1 scores each space and picks one (Gumbel-softmax
    straight-through in training, argmax in evaluation); with two it is the paper's sigmoid gate.
    """

    def __init__(self, base: nn.Linear, config: GaRAConfig) -> None:
        super().__init__(base, config.space_ranks, config.scale)
        self.config = config
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        c = base.in_features
        self.space_gate = None
        self.component_gates = None
        spaces = len(self.segment_ranks)
        if config.gating in ("gated", "space_only"):
            outputs = 1 if spaces == 2 else spaces
            self.space_gate = gate_mlp(c, config.space_gate_hidden, outputs, config.space_gate_layers).to(
                **factory
            )
        if config.gating in ("gated", "unified"):
            self.component_gates = nn.ModuleList(
                gate_mlp(c, config.component_gate_hidden, r, config.component_gate_layers).to(**factory)
                for r in self.segment_ranks
            )

    def _decide(self, x: torch.Tensor) -> _GaRADecision:
        """Run both gates (noisy straight-through in training) and record `gate_state`."""
        gate = (
            self.space_gate if self.space_gate is not None else next(iter(self.component_gates or []), None)
        )
        pooled = self._gate_input(x, gate)
        rows = pooled.shape[0]
        training = self.training
        tau = self.config.tau
        gating = self.config.gating

        spaces = len(self.segment_ranks)
        if gating == "unified":
            choice = None  # [rows, spaces] one-hot choice of a space, None = the only space
        elif gating == "random":
            drawn = torch.randint(0, spaces, (rows,), device=x.device)
            choice = F.one_hot(drawn, spaces).to(pooled.dtype)
        elif spaces == 2:
            high = hard_sigmoid_gate(self.space_gate(pooled).squeeze(-1), tau, training)
            choice = torch.stack([1 - high, high], dim=-1)
        else:
            choice = hard_softmax_gate(self.space_gate(pooled), tau, training)

        if self.component_gates is not None:
            comps = [hard_sigmoid_gate(g(pooled), tau, training) for g in self.component_gates]
        elif gating == "random":
            comps = [random_gate((rows, r), pooled) for r in self.segment_ranks]
        else:
            comps = [None] * spaces

        segment = (
            torch.zeros(rows, dtype=torch.long, device=x.device) if choice is None else choice.argmax(-1)
        )
        counts = torch.stack(
            [
                c.sum(-1) if c is not None else torch.full((rows,), r, device=x.device, dtype=pooled.dtype)
                for c, r in zip(comps, self.segment_ranks, strict=True)
            ],
            dim=-1,
        )
        active = counts.gather(1, segment[:, None]).squeeze(1)
        self.gate_state = GateState(segment=segment.detach(), active=active.detach().round().long())

        parts = []
        for index, (c, r) in enumerate(zip(comps, self.segment_ranks, strict=True)):
            part = c if c is not None else pooled.new_ones(rows, r)
            parts.append(part if choice is None else choice[:, index : index + 1] * part)
        return _GaRADecision(segment=segment, components=comps, mask=torch.cat(parts, dim=-1))

    def component_mask(self, x: torch.Tensor) -> torch.Tensor:
        return self._decide(x).mask

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        decision = self._decide(x)
        if not self.training and self.config.gating != "random":
            return self._selected_delta(x, decision.segment, decision.components)
        return self._masked_delta(x, decision.mask)


class MoELoRALinear(AdapterLinear):
    """LoRA experts of fixed ranks; one shared gate chooses one expert per row."""

    def __init__(self, base: nn.Linear, config: MoELoRAConfig) -> None:
        super().__init__(base, config.expert_ranks, config.scale)
        self.config = config
        self.gate = gate_mlp(
            base.in_features, config.gate_hidden, len(config.expert_ranks), config.gate_layers
        ).to(device=base.weight.device, dtype=base.weight.dtype)

    def _decide(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One-hot expert choice per row expanded to a component mask; records `gate_state`."""
        choice = hard_softmax_gate(self.gate(self._gate_input(x, self.gate)), self.config.tau, self.training)
        rows = choice.shape[0]
        mask = torch.cat(
            [choice[:, i : i + 1].expand(rows, r) for i, r in enumerate(self.segment_ranks)], dim=-1
        )
        segment = choice.argmax(-1)
        self.gate_state = GateState(segment=segment.detach(), active=mask.detach().sum(-1).round().long())
        return segment, mask

    def component_mask(self, x: torch.Tensor) -> torch.Tensor:
        return self._decide(x)[1]

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        segment, mask = self._decide(x)
        if not self.training:
            return self._selected_delta(x, segment, [None] * len(self.segment_ranks))
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
