"""The miniature study's pre-registered settings (docs/miniature.md): arms, sizes, steps, seeds.

Change nothing here after a run of the study except to fix a bug, and list each fix in the doc.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from garasam.errors import ConfigError

# arm -> (adapter section of the training config, learning rate); None = the frozen tiny SAM.
ADAPTER_LR, FULL_FINETUNE_LR = 1e-3, 1e-4
ARMS: dict[str, dict[str, Any] | None] = {
    "frozen": None,
    "full_finetune": {"adapter_type": "full_finetune"},
    "lora16": {"adapter_type": "lora", "rank": 16},
    "lora128": {"adapter_type": "lora", "rank": 128},
    "lora256": {"adapter_type": "lora", "rank": 256},
    "moe_lora": {"adapter_type": "moe_lora", "expert_ranks": [16, 128, 256]},
    "gara": {"adapter_type": "gara"},
    "gara_unified": {"adapter_type": "gara", "gating": "unified"},
    "gara_space_only": {"adapter_type": "gara", "gating": "space_only"},
    "gara_random": {"adapter_type": "gara", "gating": "random"},
    # Fidelity variants of GaRA (issue 19, pre-registered in docs/miniature.md): not in the study's arms.
    "gara_paper_loss": {"adapter_type": "gara"},
    "gara_gdice": {"adapter_type": "gara"},
    "gara_scale_1_16": {"adapter_type": "gara", "scale": 0.0625},
}
# The study's arms (docs/miniature.md), fixed before its first run; the variants below come on top.
STUDY_ARMS = tuple(arm for arm in ARMS if not arm.startswith(("gara_paper", "gara_gdice", "gara_scale")))
# Further training-config overrides of an arm, and the arm each variant is compared with.
ARM_OVERRIDES: dict[str, tuple[str, ...]] = {
    "gara_paper_loss": ("loss.iou_weight=0",),
    "gara_gdice": ("loss.dice=generalised",),
}
VARIANT_OF: dict[str, str] = {"gara_paper_loss": "gara", "gara_gdice": "gara", "gara_scale_1_16": "gara"}
FIDELITY_ARMS = ("frozen", "gara", *VARIANT_OF)
# The demo's core: frozen, the paper's best fixed-rank LoRA (LoRA-128, Table 6), GaRA.
DEMO_ARMS = ("frozen", "lora128", "gara")
BASELINES = ("lora16", "lora128", "lora256", "moe_lora")  # claim 2: GaRA against each
TEST_SETS = ("seen", "zero_shot")
PROMPTS = ("point", "box")  # evaluated for every model


@dataclass(frozen=True)
class StudyPlan:
    """Sizes and training settings of one run; identical for every arm (except the full fine-tuning lr)."""

    train_scenes: int
    seen_scenes: int
    zero_shot_scenes: int
    steps: int
    batch_size: int = 4
    seeds: tuple[int, ...] = (0, 1, 2)
    arms: tuple[str, ...] = STUDY_ARMS
    max_objects: int = 4
    bootstrap_replicates: int = 2000

    def __post_init__(self) -> None:
        unknown = [arm for arm in self.arms if arm not in ARMS]
        if unknown:
            raise ConfigError(f"unknown arm(s) {unknown}; choose from {', '.join(ARMS)}")
        if "frozen" not in self.arms:
            raise ConfigError("every comparison is against the frozen model: keep the arm 'frozen'")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds must be distinct and at least one, got {self.seeds}")
        for name in ("train_scenes", "seen_scenes", "zero_shot_scenes", "steps", "batch_size", "max_objects"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")


PLANS: dict[str, StudyPlan] = {
    "study": StudyPlan(train_scenes=400, seen_scenes=40, zero_shot_scenes=40, steps=300),
    "demo": StudyPlan(
        train_scenes=400, seen_scenes=40, zero_shot_scenes=40, steps=300, seeds=(0,), arms=DEMO_ARMS
    ),
    "quick": StudyPlan(
        train_scenes=96, seen_scenes=12, zero_shot_scenes=12, steps=60, seeds=(0,), arms=DEMO_ARMS
    ),
}
# (family, split) of each data split (garasam.data.synthetic); scene seeds are 0 .. n-1 in each, the
# family and split enter every scene's random key, so no two splits share a scene.
SPLIT_FAMILIES = {
    "train": ("target", "train"),
    "seen": ("target", "test"),
    "zero_shot": ("zero_shot", "test"),
}


def lr_for(arm: str) -> float:
    return FULL_FINETUNE_LR if arm == "full_finetune" else ADAPTER_LR


def run_name(arm: str, seed: int) -> str:
    """The model name of one trained arm and seed in every report (`gara@s0`)."""
    return arm if arm == "frozen" else f"{arm}@s{seed}"
