"""Typed configurations of the adapters, one dataclass per adapter type (peft style).

Defaults follow the GaRA-SAM paper (section 1 of the reference); the fields the paper leaves open
(gate input, scale, target regex) are our documented decisions and stay configurable.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from garasam.errors import ConfigError

# The fused qkv Linear of every image-encoder block: transformers' SAM (`vision_encoder.layers.N.attn.qkv`)
# and SAM 2 (`vision_encoder.backbone.blocks.N.attn.qkv`), the official `segment_anything` Sam
# (`image_encoder.blocks.N.attn.qkv`) and `sam2` (`image_encoder.trunk.blocks.N.attn.qkv`).
QKV_TARGETS = (
    r"(^|\.)(vision_encoder\.layers|vision_encoder\.backbone\.blocks|image_encoder\.blocks"
    r"|image_encoder\.trunk\.blocks)\.\d+\.attn\.qkv$"
)
# SAM 2's memory attention, where RobustPVOS places its gated-rank adapters: each layer's
# self-attention q, k, v and its cross-attention (to the memory) q; transformers' and `sam2`'s names.
MEMORY_TARGETS = r"(^|\.)memory_attention\.layers\.\d+\.(self_attn\.[qkv]_proj|cross_attn_image\.q_proj)$"
# Where adapters go in SAM 2.1's video mode: per frame in the image encoder, in the memory
# attention, or both; `target_modules` may name a preset instead of a regex.
VIDEO_PRESETS = {
    "encoder": QKV_TARGETS,
    "memory": MEMORY_TARGETS,
    "encoder+memory": f"(?:{QKV_TARGETS})|(?:{MEMORY_TARGETS})",
}
# The default before SAM 2: the same layers of every SAM 1 model; folders that store it read as the above.
LEGACY_QKV_TARGETS = r"(^|\.)(vision_encoder\.layers|image_encoder\.blocks)\.\d+\.attn\.qkv$"
# Ablation preset: qkv plus both MLP Linears of every block.
QKV_MLP_TARGETS = (
    r"(^|\.)(vision_encoder\.layers|image_encoder\.blocks)\.\d+\.(attn\.qkv|mlp\.lin1|mlp\.lin2)$"
)

Gating = Literal["gated", "unified", "space_only", "random"]
# What the gates average over: "valid" tokens only (not the zero padding of edge windows, nor the
# padded area of a non-square image), or "all" tokens (adapters saved before this choice existed).
GatePooling = Literal["valid", "all"]
GATE_POOLINGS = ("valid", "all")
# Upper bounds on sizes: far above any real adapter (ViT-H is 1280 wide, the paper's ranks end at 1024).
MAX_WIDTH = 65536
MAX_LAYERS = 64


@dataclass
class AdapterConfig:
    """Fields shared by every adapter type."""

    adapter_type: ClassVar[str] = ""
    target_modules: str = QKV_TARGETS
    scale: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["adapter_type"] = self.adapter_type
        return data

    def __post_init__(self) -> None:
        # Every number must be finite: NaN passes every `<= 0` check and would reach the weights.
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{type(self).__name__}.{item.name} must be a finite number, got {value}")
        if self.scale <= 0:
            raise ConfigError(f"{type(self).__name__}.scale must be positive, got {self.scale}")
        if self.target_modules in VIDEO_PRESETS:  # a preset's name: its layers (kept as the regex)
            self.target_modules = VIDEO_PRESETS[self.target_modules]
        _regex(self, "target_modules")


@dataclass
class LoRAConfig(AdapterConfig):
    """Plain LoRA: `rank` rank-1 components, all always on."""

    adapter_type: ClassVar[str] = "lora"
    rank: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive(self, "rank", MAX_WIDTH)


@dataclass
class GaRAConfig(AdapterConfig):
    """Gated-rank adaptation: a low and a high rank space, a space gate and component gates.

    `gating` selects the paper's ablations: "gated" (the method), "unified" (no space gate, one
    space of `r_high` gated components), "space_only" (gate 1 only: the chosen space fully on),
    "random" (space and components drawn at random, no learned gates). `r_mid` adds spaces between
    the low and the high one (the paper's 3- and 4-level hierarchies, Table 12: e.g. `r_mid=[64]` for
    16/64/256); with more than two spaces the space gate is a Gumbel-softmax choice among them.
    """

    adapter_type: ClassVar[str] = "gara"
    r_low: int = 16
    r_high: int = 256
    r_mid: tuple[int, ...] = ()
    tau: float = 0.5
    space_gate_hidden: int = 64
    space_gate_layers: int = 2
    component_gate_hidden: int = 16
    component_gate_layers: int = 3
    gating: Gating = "gated"
    gate_pooling: GatePooling = "valid"

    def __post_init__(self) -> None:
        super().__post_init__()
        _pooling(self)
        mid = self.r_mid
        if not isinstance(mid, list | tuple) or not all(
            isinstance(r, int) and not isinstance(r, bool) and 0 < r <= MAX_WIDTH for r in mid
        ):
            raise ConfigError(f"GaRAConfig.r_mid must be a list of ranks from 1 to {MAX_WIDTH}, got {mid!r}")
        self.r_mid = tuple(mid)
        if self.r_mid and self.gating == "unified":
            raise ConfigError("GaRAConfig: gating 'unified' has one rank space; leave r_mid empty")
        for name in ("r_low", "r_high", "space_gate_hidden", "component_gate_hidden"):
            _positive(self, name, MAX_WIDTH)
        # the low space is the small one, with or without spaces between (issue 29, item 10)
        if list(self.space_ranks) != sorted(set(self.space_ranks)):
            raise ConfigError(
                "GaRAConfig: nested rank spaces must grow strictly from r_low through r_mid to r_high, "
                f"got {list(self.space_ranks)}"
            )
        for name in ("space_gate_layers", "component_gate_layers"):
            _positive(self, name, MAX_LAYERS)
        if self.tau <= 0:
            raise ConfigError(f"GaRAConfig.tau must be positive, got {self.tau}")
        if self.gating not in ("gated", "unified", "space_only", "random"):
            raise ConfigError(
                f"GaRAConfig.gating must be one of gated, unified, space_only, random; got {self.gating!r}"
            )

    @property
    def space_ranks(self) -> tuple[int, ...]:
        """Ranks of the rank spaces, in order (low, mid..., high), or one space when unified."""
        return (self.r_high,) if self.gating == "unified" else (self.r_low, *self.r_mid, self.r_high)


@dataclass
class MoELoRAConfig(AdapterConfig):
    """Mixture of LoRA experts of fixed ranks with one shared gate (router) choosing one expert per
    input. The default experts are the paper's (Table 5: ranks 2, 16, 128, 256; its other variant is
    2, 16, 128, 1024)."""

    adapter_type: ClassVar[str] = "moe_lora"
    expert_ranks: tuple[int, ...] = field(default=(2, 16, 128, 256))
    tau: float = 0.5
    gate_hidden: int = 64
    gate_layers: int = 2
    gate_pooling: GatePooling = "valid"

    def __post_init__(self) -> None:
        super().__post_init__()
        _pooling(self)
        ranks = self.expert_ranks
        if (
            not isinstance(ranks, list | tuple)
            or len(ranks) < 2
            or not all(isinstance(r, int) and not isinstance(r, bool) and 0 < r <= MAX_WIDTH for r in ranks)
        ):
            raise ConfigError(
                f"MoELoRAConfig.expert_ranks needs two or more ranks from 1 to {MAX_WIDTH}, got {ranks!r}"
            )
        self.expert_ranks = tuple(ranks)
        _positive(self, "gate_hidden", MAX_WIDTH)
        _positive(self, "gate_layers", MAX_LAYERS)
        if self.tau <= 0:
            raise ConfigError(f"MoELoRAConfig.tau must be positive, got {self.tau}")


@dataclass
class FullFinetuneConfig(AdapterConfig):
    """Not an adapter: every parameter whose name matches `trainable` trains (the whole image encoder
    by default). The miniature study's upper bound; saved and loaded like adapters (those weights only).
    `target_modules` still names the qkv layers, which fix the backbone identity it fits."""

    adapter_type: ClassVar[str] = "full_finetune"
    trainable: str = r"^vision_encoder\."

    def __post_init__(self) -> None:
        super().__post_init__()
        _regex(self, "trainable")


CONFIG_TYPES: dict[str, type[AdapterConfig]] = {
    c.adapter_type: c for c in (LoRAConfig, GaRAConfig, MoELoRAConfig, FullFinetuneConfig)
}


def adapter_config_from_dict(data: dict[str, Any]) -> AdapterConfig:
    """Rebuild a config from `to_dict()` output; unknown types or keys are errors that name them."""
    data = dict(data)
    kind = data.pop("adapter_type", None)
    if kind not in CONFIG_TYPES:
        raise ConfigError(f"unknown adapter_type {kind!r}; expected one of {sorted(CONFIG_TYPES)}")
    cls = CONFIG_TYPES[kind]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {kind} adapter config key(s): {', '.join(unknown)}")
    if data.get("target_modules") == LEGACY_QKV_TARGETS:
        data["target_modules"] = QKV_TARGETS
    return cls(**data)


def _pooling(config: GaRAConfig | MoELoRAConfig) -> None:
    value = config.gate_pooling
    if value not in GATE_POOLINGS:
        raise ConfigError(
            f"{type(config).__name__}.gate_pooling must be one of {', '.join(GATE_POOLINGS)}; got {value!r}"
        )


def _regex(config: AdapterConfig, name: str) -> None:
    """A module-name pattern must compile now, not deep inside the injection."""
    value = getattr(config, name)
    if not isinstance(value, str):
        raise ConfigError(
            f"{type(config).__name__}.{name} must be a regular expression string, got {value!r}"
        )
    try:
        re.compile(value)
    except re.error as err:
        raise ConfigError(
            f"{type(config).__name__}.{name} {value!r} is not a valid regular expression ({err})"
        ) from None


def _positive(config: AdapterConfig, name: str, maximum: int) -> None:
    """A count from 1 to `maximum`: the bound turns a typo such as 10**12 layers into a message, not a
    process killed for memory."""
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= maximum:
        raise ConfigError(
            f"{type(config).__name__}.{name} must be an integer from 1 to {maximum}, got {value!r}"
        )
