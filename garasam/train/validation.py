"""Periodic validation during training: IoU per degradation on a small held-out set.

Runs the evaluation protocol itself (`garasam.eval.evaluate`: deterministic per-image degradation
seeds, one evaluation prompt per object, masks scored at the original resolution, images sharded over
the DDP ranks with sums and counts combined), restricted to a few images, one prompt kind and the
first objects of each image so that it stays a small fraction of training time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from garasam.data.degradations import CLEAN
from garasam.data.readers import Sample
from garasam.train.config import TrainConfig

MODEL = "training"  # the model's name inside the evaluation results
MIDDLE_SEVERITY = 3  # imagenet-c validates at one severity (the middle one) unless data.severity is set


class HeldOut(Sequence[Sample]):
    """The validation items of a dataset, each cut to its first `max_objects` objects."""

    def __init__(self, data: Sequence[Sample], indices: Sequence[int], max_objects: int) -> None:
        self.data, self.indices, self.max_objects = data, list(indices), max_objects
        self.strict = getattr(data, "strict", False)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        sample = self.data[self.indices[index]]
        return Sample(sample.image, sample.masks[: self.max_objects], sample.meta)


class Validator:
    """Scores the model under training on the held-out items; every rank must call it."""

    def __init__(self, data: Sequence[Sample], indices: Sequence[int], config: TrainConfig) -> None:
        v = config.validation
        self.held_out = HeldOut(data, list(indices)[: v.max_images], config.data.max_objects_per_image)
        self.suite = config.data.suite
        self.prompt = v.prompt
        self.batch_size = v.batch_size
        self.precision = config.run.precision
        self.degradations = None if v.degradations is None else [d for d in v.degradations if d != CLEAN.name]
        self.severities = None
        if self.suite == "imagenet-c":
            self.severities = [config.data.severity or MIDDLE_SEVERITY]

    def __call__(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """Mean IoU per degradation name, plus "degraded" (mean over degradations) and "mean" (all)."""
        from garasam.eval import evaluate

        # evaluate() seeds the global RNG for the random-gating ablation; training's Gumbel noise
        # must go on from where it was, so the generator states are restored afterwards.
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            results = evaluate(
                {MODEL: model},
                self.held_out,
                self.suite,
                prompts=[self.prompt],
                severities=self.severities,
                degradations=self.degradations,
                device=device,
                precision=self.precision,
                batch_size=self.batch_size,
                progress=False,
            )
        model.train()
        scores = {CLEAN.name: _iou(results.clear(MODEL, self.prompt))}
        for name in results.degradation_names:
            scores[name] = _iou(results.per_degradation(MODEL, self.prompt, name))
        scores["degraded"] = _iou(results.degrade(MODEL, self.prompt))
        scored = [v for k, v in scores.items() if k != "degraded" and math.isfinite(v)]
        scores["mean"] = sum(scored) / len(scored) if scored else float("nan")
        return scores


def _iou(means: dict[str, float] | None) -> float:
    return float("nan") if means is None else float(means["iou"])
