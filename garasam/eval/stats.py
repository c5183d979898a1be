"""Bootstrap confidence intervals for the robustness protocol's per-object scores.

A model's score on a test set is the protocol's own statistic: "Clear" is the mean over objects of the
clean view; "Degrade" is the mean over degradations of each degradation's mean over its objects. The
bootstrap redraws what is random in an experiment: the objects (a multinomial reweighting, the same
draw for every model, so comparisons are paired) and, when a model was trained with several seeds,
its seeds (drawn with replacement, independently per model). Intervals are the 2.5 and 97.5
percentiles of the redrawn statistic or difference.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from garasam.errors import ConfigError

STATISTICS = ("clear", "degrade", "gap")  # gap = clear - degrade


@dataclass(frozen=True)
class Scores:
    """One model's per-object scores on one test set and prompt: [seeds, conditions, objects], NaN
    where a condition has no such object; condition 0 is clean."""

    values: np.ndarray

    def __post_init__(self) -> None:
        if self.values.ndim != 3 or self.values.shape[1] < 2:
            raise ConfigError(
                f"scores must be [seeds, clean + degradations, objects], got {self.values.shape}"
            )


@dataclass(frozen=True)
class Estimate:
    """A point estimate (all objects, all seeds) and its bootstrap 95% interval, in the scores' unit."""

    value: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def verdict(self) -> str:
        """ "holds" when the interval lies above zero, "does not hold" below, "within noise" across it."""
        if self.low > 0:
            return "holds"
        if self.high < 0:
            return "does not hold"
        return "within noise"

    def format(self, scale: float = 100.0, digits: int = 1) -> str:
        return (
            f"{scale * self.value:.{digits}f} [{scale * self.low:.{digits}f}, {scale * self.high:.{digits}f}]"
        )


def stack_scores(
    per_seed: Sequence[Mapping[str, Mapping[str, float]]], conditions: Sequence[str], objects: Sequence[str]
) -> Scores:
    """Scores from per-seed `{condition: {object key: value}}` maps (missing entries become NaN)."""
    values = np.full((len(per_seed), len(conditions), len(objects)), np.nan)
    column = {key: j for j, key in enumerate(objects)}
    for s, seed_scores in enumerate(per_seed):
        for c, condition in enumerate(conditions):
            for key, value in seed_scores.get(condition, {}).items():
                values[s, c, column[key]] = value
    return Scores(values)


class Bootstrap:
    """Shared object and seed draws for every model of one test set, so differences are paired."""

    def __init__(self, num_objects: int, replicates: int = 2000, seed: int = 0) -> None:
        if num_objects < 1 or replicates < 100:
            raise ConfigError(
                f"bootstrap needs objects >= 1 and replicates >= 100, got {num_objects}, {replicates}"
            )
        self.rng = np.random.default_rng(seed)
        self.replicates = replicates
        # Object weights: how often each object appears in each redrawn set ([B, objects]).
        self.weights = self.rng.multinomial(
            num_objects, np.full(num_objects, 1 / num_objects), size=replicates
        )
        self._draws: dict[str, np.ndarray] = {}

    def replicate(self, name: str, scores: Scores, statistic: str) -> tuple[float, np.ndarray]:
        """(point estimate, [B] redrawn values) of `statistic` for model `name`."""
        seeds = scores.values.shape[0]
        draw = self._draws.setdefault(name, self.rng.integers(seeds, size=(self.replicates, seeds)))
        if draw.shape[1] != seeds:
            raise ConfigError(f"{name}: seed count changed between statistics ({draw.shape[1]} vs {seeds})")
        point = float(
            np.mean([_statistic(v, np.ones((1, v.shape[-1])), statistic)[0] for v in scores.values])
        )
        per_seed = np.stack([_statistic(v, self.weights, statistic) for v in scores.values])  # [S, B]
        redrawn = per_seed[draw, np.arange(self.replicates)[:, None]].mean(1)
        return point, redrawn

    def estimate(self, name: str, scores: Scores, statistic: str) -> Estimate:
        point, redrawn = self.replicate(name, scores, statistic)
        return interval(point, redrawn)

    def difference(self, a: str, scores_a: Scores, b: str, scores_b: Scores, statistic: str) -> Estimate:
        """`statistic` of a minus that of b, paired over objects."""
        point_a, redrawn_a = self.replicate(a, scores_a, statistic)
        point_b, redrawn_b = self.replicate(b, scores_b, statistic)
        return interval(point_a - point_b, redrawn_a - redrawn_b)


def _statistic(values: np.ndarray, weights: np.ndarray, statistic: str) -> np.ndarray:
    """[conditions, objects] scores and [B, objects] weights -> [B] values of the statistic."""
    if statistic not in STATISTICS:
        raise ConfigError(f"statistic must be one of {STATISTICS}, got {statistic!r}")
    means = condition_means(values, weights)
    clear = means[:, 0]
    degrade = np.nanmean(means[:, 1:], axis=1)
    return {"clear": clear, "degrade": degrade, "gap": clear - degrade}[statistic]


def condition_means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """[conditions, objects] scores (NaN = not scored) and [B, objects] object weights -> [B, conditions]
    weighted means, NaN where a redrawn set holds no object of a condition."""
    present = ~np.isnan(values)
    totals = weights @ np.where(present, values, 0.0).T
    counts = weights @ present.T.astype(float)
    means = totals / np.maximum(counts, 1e-12)
    means[counts == 0] = np.nan
    return means


def interval(point: float, redrawn: np.ndarray) -> Estimate:
    """The estimate `point` with the 2.5 and 97.5 percentiles of its redrawn values."""
    low, high = np.nanpercentile(redrawn, [2.5, 97.5])
    return Estimate(point, float(low), float(high))
