"""Bootstrap intervals: the protocol's statistics, paired differences, seeds, missing objects."""

from __future__ import annotations

import numpy as np
import pytest

from garasam.errors import ConfigError
from garasam.eval.stats import Bootstrap, Estimate, Scores, stack_scores


def _scores(
    rng: np.random.Generator, seeds: int, objects: int, shift: float = 0.0, noise: float = 0.1
) -> Scores:
    base = rng.uniform(0.3, 0.9, size=(1, 4, objects))
    return Scores(np.clip(base + shift + rng.normal(0, noise, size=(seeds, 4, objects)), 0, 1))


def test_point_estimates_are_the_protocols_statistics() -> None:
    values = np.array(
        [[[1.0, 0.0], [0.5, np.nan], [0.2, 0.4]]]
    )  # clean, two degradations; one object missing
    boot = Bootstrap(2, replicates=200)
    scores = Scores(values)
    assert boot.estimate("m", scores, "clear").value == pytest.approx(0.5)
    # Degrade: mean over degradations of each one's mean over its objects: (0.5 + 0.3) / 2
    assert boot.estimate("m", scores, "degrade").value == pytest.approx(0.4)
    assert boot.estimate("m", scores, "gap").value == pytest.approx(0.1)


def test_intervals_cover_the_truth_and_shrink_with_more_objects() -> None:
    rng = np.random.default_rng(1)
    widths = []
    for objects in (40, 400):
        scores = _scores(rng, 3, objects)
        est = Bootstrap(objects, seed=2).estimate("m", scores, "clear")
        assert est.low < est.value < est.high
        widths.append(est.high - est.low)
    assert widths[1] < 0.6 * widths[0]


def test_paired_difference_of_a_model_with_itself_is_exactly_zero() -> None:
    rng = np.random.default_rng(0)
    scores = _scores(rng, 1, 50)
    est = Bootstrap(50).difference("a", scores, "b", Scores(scores.values.copy()), "degrade")
    assert est.value == 0 and est.low == 0 and est.high == 0 and est.verdict() == "within noise"


def test_a_real_shift_is_called_and_noise_is_not() -> None:
    rng = np.random.default_rng(3)
    base = _scores(rng, 1, 120, noise=0.0)
    better = Scores(np.clip(base.values + 0.05 + rng.normal(0, 0.02, size=(3, 4, 120)), 0, 1))
    same = Scores(np.clip(base.values + rng.normal(0, 0.02, size=(3, 4, 120)), 0, 1))
    boot = Bootstrap(120, seed=4)
    assert boot.difference("better", better, "base", base, "degrade").verdict() == "holds"
    assert boot.difference("base", base, "better", better, "clear").verdict() == "does not hold"
    assert boot.difference("same", same, "base", base, "degrade").verdict() == "within noise"


def test_seed_variation_widens_the_interval() -> None:
    rng = np.random.default_rng(5)
    steady = _scores(rng, 3, 100, noise=0.0)
    shaky = Scores(steady.values + np.array([-0.05, 0.0, 0.05])[:, None, None])
    boot = Bootstrap(100, seed=6)
    a = boot.estimate("steady", steady, "clear")
    b = boot.estimate("shaky", shaky, "clear")
    assert a.value == pytest.approx(b.value) and (b.high - b.low) > 1.5 * (a.high - a.low)


def test_stack_scores_fills_missing_with_nan_and_bad_shapes_are_refused() -> None:
    scores = stack_scores(
        [{"clean": {"x/0": 0.5, "x/1": 1.0}, "fog": {"x/1": 0.25}}], ["clean", "fog"], ["x/0", "x/1"]
    )
    assert np.isnan(scores.values[0, 1, 0]) and scores.values[0, 1, 1] == 0.25
    with pytest.raises(ConfigError):
        Scores(np.zeros((2, 1, 3)))
    with pytest.raises(ConfigError, match="statistic"):
        Bootstrap(3, replicates=100).estimate("m", Scores(np.zeros((1, 2, 3))), "median")
    with pytest.raises(ConfigError, match="replicates"):
        Bootstrap(3, replicates=10)


def test_verdicts_and_formatting() -> None:
    assert Estimate(0.02, 0.01, 0.03).verdict() == "holds"
    assert Estimate(-0.02, -0.03, -0.01).verdict() == "does not hold"
    assert Estimate(0.0, -0.01, 0.01).verdict() == "within noise"
    assert Estimate(0.615, 0.6, 0.63).format() == "61.5 [60.0, 63.0]"
