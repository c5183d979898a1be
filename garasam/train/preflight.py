"""Before a run builds anything: does the chosen model and batch fit this machine?

A recipe that asks a 2-core laptop for ViT-B at batch 8 should stop in a second with a message that
says what to change, not be killed by the kernel after minutes. The memory figures are rough
per-image training peaks (activations, gradients and optimizer state of the adapters included),
scaled from the H200 measurements in `benchmarks/results/` (ViT-B 25.5 GiB and ViT-H 67 GiB at batch
8 in bf16); fp32 roughly doubles the activations. The check refuses only what clearly cannot fit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from garasam.errors import ConfigError
from garasam.models.registry import encoder_of, family_of, model_type_name

# GiB per image in one training step, by model type: (bf16 autocast, fp32).
PER_IMAGE_GIB: dict[str, tuple[float, float]] = {
    "tiny": (0.05, 0.1),
    "vit_b": (3.0, 5.0),
    "vit_l": (5.5, 9.0),
    "vit_h": (8.5, 14.0),
}
FIXED_GIB = {"tiny": 0.2, "vit_b": 1.5, "vit_l": 3.0, "vit_h": 5.0}  # weights, workspace
# SAM 2.1's Hiera encoders, not measured: each counts as the ViT of about its cost (Meta's parameter
# counts: t 39 M, s 46 M, b+ 81 M, l 224 M; vit_b 94 M, vit_l 312 M), erring high.
_HIERA_AS_VIT = {
    "hiera_t": "vit_b",
    "hiera_s": "vit_b",
    "hiera_b+": "vit_b",
    "hiera_l": "vit_l",
    "mini": "tiny",
}
CHECKPOINTING_FACTOR = 0.4  # activation checkpointing keeps about this share of the activations


@dataclass(frozen=True)
class Plan:
    """What the run will use, for the start-up line and the log."""

    workers: int
    needed_gib: float
    available_gib: float | None

    def describe(self) -> str:
        memory = f"~{self.needed_gib:.1f} GiB estimated"
        if self.available_gib is not None:
            memory += f" of {self.available_gib:.1f} GiB available"
        return f"{self.workers} loader worker(s), {memory}"


def available_gib(device: torch.device) -> float | None:
    """Free memory of the device the run trains on (None where it cannot be told)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free / 2**30
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def _memory_class(model_type: str) -> str:
    """The row of the tables above a model type uses (HQ-SAM and RobustSAM: their encoder's)."""
    encoder = encoder_of(model_type)
    return _HIERA_AS_VIT.get(encoder, encoder) if family_of(model_type) == "sam2" else encoder


def needed_gib(model_type: str, per_process_batch: int, bf16: bool, checkpointing: bool) -> float:
    """Rough peak memory of one training process (HQ-SAM and RobustSAM count as their encoder: the
    encoder's activations dominate, their decoders add little)."""
    encoder = _memory_class(model_type)
    per_image = PER_IMAGE_GIB[encoder][0 if bf16 else 1]
    if checkpointing:
        per_image *= CHECKPOINTING_FACTOR
    return FIXED_GIB[encoder] + per_image * per_process_batch


def plan_resources(
    model_type: str,
    per_process_batch: int,
    workers: int,
    bf16: bool,
    checkpointing: bool,
    device: torch.device,
    available: float | None = None,
) -> Plan:
    """Refuse a batch that cannot fit; cap loader workers at the CPUs this process may use."""
    need = needed_gib(model_type, per_process_batch, bf16, checkpointing)
    free = available_gib(device) if available is None else available
    if free is not None and need > free:
        fixed = FIXED_GIB[_memory_class(model_type)]
        per_image = need - fixed
        fits = int((free - fixed) / (per_image / per_process_batch))
        hints = [f"run.batch_size={max(fits, 1)} (per process) or less"] if fits >= 1 else []
        if not checkpointing:
            hints.append("run.activation_checkpointing=true")
        if device.type != "cuda":
            hints.append("a GPU (--device cuda)")
        if _memory_class(model_type) != "tiny":
            small = (
                "sam2.1_mini"
                if family_of(model_type) == "sam2"
                else model_type_name(family_of(model_type), "tiny")
            )
            hints.append(f"model.model_type={small} for a test run")
        raise ConfigError(
            f"model {model_type} at batch {per_process_batch} per process needs about {need:.1f} GiB on "
            f"{device} ({'bf16' if bf16 else 'fp32'}), but only {free:.1f} GiB are available; "
            f"try {', '.join(hints)}"
        )
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return Plan(workers=min(workers, cpus), needed_gib=need, available_gib=free)
