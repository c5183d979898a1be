"""The robust-video miniature's pre-registered settings (docs/video-miniature.md): arms, data sizes,
training, evaluation conditions and seeds.

Change nothing here after a run of the study except to fix a bug, and list each fix in the doc.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from garasam.errors import ConfigError

ADAPTER_LR, FULL_FINETUNE_LR = 1e-3, 1e-4
# arm -> adapter section of the video recipe; None = the frozen sam2.1_tiny.
ARMS: dict[str, dict[str, Any] | None] = {
    "frozen": None,
    "lora128_enc": {"adapter_type": "lora", "rank": 128, "target_modules": "encoder"},
    "gara_enc": {"adapter_type": "gara", "target_modules": "encoder"},
    "gara_mem": {"adapter_type": "gara", "target_modules": "memory"},
    "gara_enc_mem": {"adapter_type": "gara", "target_modules": "encoder+memory"},
    "lora128_enc_mem": {"adapter_type": "lora", "rank": 128, "target_modules": "encoder+memory"},
    # every parameter of the image encoder and the memory attention (the ceiling, reported apart)
    "full_finetune": {"adapter_type": "full_finetune", "trainable": r"^(vision_encoder|memory_attention)\."},
}
STUDY_ARMS = tuple(ARMS)
# The demo's core (issue 32): frozen, per-frame GaRA, GaRA in the encoder and the memory attention.
DEMO_ARMS = ("frozen", "gara_enc", "gara_enc_mem")
TEST_SETS = ("seen", "zero_shot")
# (family, split) of each data split (garasam.data.synthetic_video): clip seeds 0 .. n-1 in each.
SPLIT_FAMILIES = {
    "train": ("target", "train"),
    "seen": ("target", "test"),
    "zero_shot": ("zero_shot", "test"),
}
DEGRADATIONS = ("fog", "snow", "gauss_noise", "motion_blur")  # robustseg, with a time-varying intensity
PROTOCOLS = ("semi", "clicks")
SIZE = 256


@dataclass(frozen=True)
class VideoStudyPlan:
    """Sizes and settings of one run; identical for every arm (except the full fine-tuning lr)."""

    train_clips: int
    test_clips: int
    steps: int
    clip_frames: int = 8  # frames of every generated clip
    train_frames: int = 4  # frames of a training clip (a random window of a generated clip)
    seeds: tuple[int, ...] = (0, 1, 2)
    arms: tuple[str, ...] = STUDY_ARMS
    max_objects: int = 3
    intensity_low: float = 0.3
    degradations: tuple[str, ...] = DEGRADATIONS
    protocols: tuple[str, ...] = PROTOCOLS
    bootstrap_replicates: int = 2000

    def __post_init__(self) -> None:
        unknown = [arm for arm in self.arms if arm not in ARMS]
        if unknown:
            raise ConfigError(f"unknown video arm(s) {unknown}; choose from {', '.join(ARMS)}")
        if "frozen" not in self.arms:
            raise ConfigError("every comparison is against the frozen model: keep the arm 'frozen'")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"seeds must be distinct and at least one, got {self.seeds}")
        for name in ("train_clips", "test_clips", "steps", "max_objects", "train_frames"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 2 <= self.train_frames <= self.clip_frames or self.clip_frames < 3:
            raise ConfigError(
                f"clips of {self.clip_frames} frames (at least 3: DAVIS scores frames 1 to N-2) and "
                f"training windows of 2 to {self.clip_frames} frames, got {self.train_frames}"
            )


STEPS = 150  # fixed from a timing of the recipe (docs/video-miniature.md, Budget), never from a score
PLANS: dict[str, VideoStudyPlan] = {
    "study": VideoStudyPlan(train_clips=96, test_clips=16, steps=STEPS),
    # the demo's core within 15 minutes on 2 CPU cores: fewer test clips, the same training
    "demo": VideoStudyPlan(train_clips=96, test_clips=10, steps=STEPS, seeds=(0,), arms=DEMO_ARMS),
    "quick": VideoStudyPlan(
        train_clips=8,
        test_clips=3,
        steps=4,
        clip_frames=5,
        train_frames=3,
        seeds=(0,),
        arms=DEMO_ARMS,
        degradations=("fog",),
        bootstrap_replicates=200,
    ),
}


def lr_for(arm: str) -> float:
    return FULL_FINETUNE_LR if arm == "full_finetune" else ADAPTER_LR


def run_name(arm: str, seed: int) -> str:
    """The model name of one trained arm and seed in every report (`gara_enc@s0`)."""
    return arm if arm == "frozen" else f"{arm}@s{seed}"
