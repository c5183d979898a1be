"""What an evaluation returns: metric and gate sums per (model, condition, prompt), kept as sums and
counts so that ranks add up, and the `Results` that reads means, intervals and tables from them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from garasam.data.prompts import Prompt, PromptKind
from garasam.eval.conditions import CLEAN_CONDITION, Condition
from garasam.eval.metrics import (
    METRICS,
    average_precision,
)


@dataclass
class MetricSums:
    """Sums of each metric over scored objects, and their number, plus every object's own scores
    (keyed `image_id/object_index`, the object's index in the clean ground truth) for per-object
    statistics such as bootstrap intervals and paired comparisons."""

    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(METRICS, 0.0))
    count: int = 0
    objects: dict[str, tuple[float, ...]] = field(default_factory=dict)  # key -> one value per METRICS
    predicted: dict[str, float] = field(default_factory=dict)  # key -> SAM's predicted IoU of the mask

    def add(
        self,
        values: Mapping[str, torch.Tensor],
        keys: Sequence[str] = (),
        predicted: torch.Tensor | None = None,
    ) -> None:
        for name in METRICS:
            self.sums[name] += float(values[name].sum())
        self.count += int(values[METRICS[0]].numel())
        if keys:
            columns = torch.stack([values[name].float().flatten().cpu() for name in METRICS], 1).tolist()
            self.objects.update(zip(keys, map(tuple, columns), strict=True))
            if predicted is not None:
                self.predicted.update(zip(keys, predicted.float().flatten().cpu().tolist(), strict=True))

    def merge(self, other: MetricSums) -> None:
        for name in METRICS:
            self.sums[name] += other.sums[name]
        self.count += other.count
        self.objects.update(other.objects)
        self.predicted.update(other.predicted)

    def average_precision(self) -> float | None:
        """Mask AP@[.50:.95] of the objects, ranked by SAM's predicted IoU (`metrics.average_precision`)."""
        keys = [key for key in self.objects if key in self.predicted]
        if not keys:
            return None
        column = METRICS.index("iou")
        return average_precision([self.objects[k][column] for k in keys], [self.predicted[k] for k in keys])

    def means(self) -> dict[str, float] | None:
        """Mean of each metric over objects, or None when nothing was scored."""
        if self.count == 0:
            return None
        return {name: value / self.count for name, value in self.sums.items()}


@dataclass
class GateSums:
    """Sums over images of one adapter's per-image gate statistics (see `gate_summary`)."""

    active_rank: float = 0.0
    high_fraction: float = 0.0
    images: int = 0
    rows_per_image: int = 0

    def merge(self, other: GateSums) -> None:
        self.active_rank += other.active_rank
        self.high_fraction += other.high_fraction
        self.images += other.images
        self.rows_per_image = max(self.rows_per_image, other.rows_per_image)


@dataclass
class Example:
    """One image under one condition and prompt kind, kept for the qualitative sheet."""

    image_id: str
    condition: Condition
    prompt: PromptKind
    clean: np.ndarray  # H x W x 3 uint8
    degraded: np.ndarray  # H x W x 3 uint8
    gt: np.ndarray  # bool [N, H, W] (warped for geometric degradations)
    prompts: list[Prompt]  # original-frame prompts, one per object
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # model -> bool [N, H, W]
    iou: dict[str, float] = field(default_factory=dict)  # model -> mean IoU over the objects


ScoreKey = tuple[str, str, int, str]  # model, degradation, severity, prompt


GateKey = tuple[str, str, int, str]  # model, degradation, severity, adapter layer


@dataclass
class Results:
    """Everything one evaluation produced; `garasam.eval.report.write_report` turns it into files."""

    config: dict[str, Any]
    models: dict[str, dict[str, Any]]  # name -> identity (adapter config, backbone, parameters)
    conditions: list[Condition]  # clean first
    scores: dict[ScoreKey, MetricSums]
    gates: dict[GateKey, GateSums]
    num_images: int
    problems: list[str]
    versions: dict[str, str]
    wall_time_s: float
    examples: list[Example] = field(default_factory=list)

    @property
    def model_names(self) -> list[str]:
        return list(self.models)

    @property
    def prompts(self) -> list[PromptKind]:
        return list(self.config["prompts"])

    @property
    def degraded_conditions(self) -> list[Condition]:
        return [c for c in self.conditions if c != CLEAN_CONDITION]

    @property
    def degradation_names(self) -> list[str]:
        """Degradations of the run in suite order, without clean."""
        return list(dict.fromkeys(c.degradation for c in self.degraded_conditions))

    @property
    def severities(self) -> list[int]:
        return sorted({c.severity for c in self.degraded_conditions})

    def condition_label(self, condition: Condition) -> str:
        """A condition's display name; the severity is shown only when the run has several."""
        return condition.label if len(self.severities) > 1 else condition.degradation

    def condition_mean(self, model: str, prompt: str, condition: Condition) -> dict[str, float] | None:
        """Per-object means of one (model, prompt, condition), None if no object was scored."""
        sums = self.scores.get((model, condition.degradation, condition.severity, prompt))
        return None if sums is None else sums.means()

    def count(self, model: str, prompt: str, conditions: Sequence[Condition]) -> int:
        """Objects scored over `conditions`."""
        return sum(self.scores[(model, c.degradation, c.severity, prompt)].count for c in conditions)

    def mean_over(self, model: str, prompt: str, conditions: Sequence[Condition]) -> dict[str, float] | None:
        """Mean over `conditions` of each condition's per-object mean (each degradation weighs the same,
        as the paper's "Degrade" column); conditions without scored objects are left out."""
        means = [m for c in conditions if (m := self.condition_mean(model, prompt, c)) is not None]
        if not means:
            return None
        return {name: sum(m[name] for m in means) / len(means) for name in METRICS}

    def clear(self, model: str, prompt: str) -> dict[str, float] | None:
        return self.condition_mean(model, prompt, CLEAN_CONDITION)

    def average_precision(self, model: str, prompt: str, conditions: Sequence[Condition]) -> float | None:
        """Mean over `conditions` of each condition's mask AP (each degradation weighs the same)."""
        values = [
            ap
            for c in conditions
            if (sums := self.scores.get((model, c.degradation, c.severity, prompt))) is not None
            and (ap := sums.average_precision()) is not None
        ]
        return sum(values) / len(values) if values else None

    def degrade(self, model: str, prompt: str, severity: int | None = None) -> dict[str, float] | None:
        """ "Degrade": the mean over the suite's degradations (and severities, or one `severity`)."""
        conditions = [c for c in self.degraded_conditions if severity is None or c.severity == severity]
        return self.mean_over(model, prompt, conditions)

    def per_degradation(self, model: str, prompt: str, degradation: str) -> dict[str, float] | None:
        """One degradation's mean over the evaluated severities."""
        return self.mean_over(
            model, prompt, [c for c in self.degraded_conditions if c.degradation == degradation]
        )

    def rows(self) -> list[dict[str, Any]]:
        """One row per model x condition x prompt with per-object means and the object count."""
        rows = []
        for model in self.model_names:
            for condition in self.conditions:
                for prompt in self.prompts:
                    sums = self.scores[(model, condition.degradation, condition.severity, prompt)]
                    means = sums.means() or dict.fromkeys(METRICS)
                    rows.append(
                        {
                            "model": model,
                            "dataset": self.config["dataset"],
                            "degradation": condition.degradation,
                            "severity": condition.severity,
                            "prompt": prompt,
                            **means,
                            "count": sums.count,
                        }
                    )
        return rows

    def object_scores(
        self, model: str, prompt: str, condition: Condition, metric: str = "iou"
    ) -> dict[str, float]:
        """Every scored object's `metric` for one (model, prompt, condition), keyed `image_id/index`."""
        column = METRICS.index(metric)
        sums = self.scores[(model, condition.degradation, condition.severity, prompt)]
        return {key: values[column] for key, values in sums.objects.items()}

    def object_rows(self) -> list[dict[str, Any]]:
        """One row per model x condition x prompt x object: the per-object scores file."""
        rows = []
        for (model, degradation, severity, prompt), sums in self.scores.items():
            for key, values in sums.objects.items():
                image_id, _, index = key.rpartition("/")
                rows.append(
                    {
                        "model": model,
                        "image_id": image_id,
                        "object": int(index),
                        "degradation": degradation,
                        "severity": severity,
                        "prompt": prompt,
                        **dict(zip(METRICS, values, strict=True)),
                        "predicted_iou": sums.predicted.get(key),
                    }
                )
        return rows

    def gate_layers(self, model: str) -> list[str]:
        """Adapter layers with gate statistics for `model`, in model order."""
        return list(dict.fromkeys(key[3] for key in self.gates if key[0] == model))

    def gate_rows_per_image(self, model: str, layer: str) -> int:
        """Gate decisions per image of one adapter: windows in windowed blocks, 1 in global blocks."""
        return next(s.rows_per_image for (m, _, _, n), s in self.gates.items() if (m, n) == (model, layer))

    def gate_mean(self, model: str, layer: str, condition: Condition) -> tuple[float, float] | None:
        """(mean active rank, mean high-space fraction) over images, None if never recorded."""
        sums = self.gates.get((model, condition.degradation, condition.severity, layer))
        if sums is None or sums.images == 0:
            return None
        return sums.active_rank / sums.images, sums.high_fraction / sums.images
