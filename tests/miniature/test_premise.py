"""The premise analysis (docs/miniature.md, "The paper's premise") on fabricated per-object scores
whose answers are known: the rank called best per degradation, the oracles against the noise oracle,
GaRA's share, and the errors for files it cannot read."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from garasam.errors import DataError
from garasam.eval.oracle import load_scores, oracle_summary
from garasam.miniature.plan import StudyPlan, run_name
from garasam.miniature.premise import RANKS, analyse_premise, premise_applies

PLAN = StudyPlan(
    train_scenes=1,
    seen_scenes=1,
    zero_shot_scenes=1,
    steps=1,
    arms=("frozen", *RANKS, "gara"),
    bootstrap_replicates=300,
)
CONDITIONS = ("clean", "fog", "snow", "gauss_noise")
OBJECTS = 40

Score = Callable[[str, int, str, int], float]  # (arm, seed, condition, object) -> IoU


def write_study(root: Path, score: Score, prompts: tuple[str, ...] = ("point", "box")) -> Path:
    folder = root / "eval" / "seen"
    folder.mkdir(parents=True)
    with (folder / "objects.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "image_id", "object", "degradation", "severity", "prompt", "iou"])
        for arm in (*RANKS, "gara"):
            for seed in PLAN.seeds:
                for condition in CONDITIONS:
                    for obj in range(OBJECTS):
                        iou = float(np.clip(score(arm, seed, condition, obj), 0, 1))
                        for prompt in prompts:
                            row = [run_name(arm, seed), f"img{obj // 2}", obj % 2, condition, 1, prompt, iou]
                            writer.writerow(row)
    return root / "eval"


def noise(arm: str, seed: int, condition: str, obj: int) -> float:
    """A small per-seed, per-object wobble, alike for every arm (so only the bonuses tell ranks apart)."""
    key = seed * 100 + CONDITIONS.index(condition) * 10
    return 0.01 * np.random.default_rng(key + obj * 7919).standard_normal()


def base(condition: str, obj: int) -> float:
    return 0.5 + 0.3 * np.sin(obj) - 0.1 * (condition != "clean")


def test_the_best_rank_depends_on_the_corruption_when_two_degradations_call_different_ranks(tmp_path) -> None:
    def score(arm: str, seed: int, condition: str, obj: int) -> float:
        bonus = 0.2 * ((arm, condition) in {("lora16", "fog"), ("lora256", "snow")})
        return base(condition, obj) + bonus + noise(arm, seed, condition, obj)

    part = analyse_premise(write_study(tmp_path, score), PLAN)["test_sets"]["seen"]["point"]["best_rank"]
    called = {r["degradation"]: r["called_best"] for r in part["per_degradation"]}
    assert called == {"fog": "lora16", "snow": "lora256", "gauss_noise": None}
    assert part["verdict"] == "holds"
    fog = next(r for r in part["per_degradation"] if r["degradation"] == "fog")
    assert fog["differences"]["lora16-lora128"]["value"] == pytest.approx(20.0, abs=1.0)


def test_one_rank_best_everywhere_does_not_make_the_best_rank_depend_on_the_corruption(tmp_path) -> None:
    def score(arm: str, seed: int, condition: str, obj: int) -> float:
        return base(condition, obj) + 0.2 * (arm == "lora128") + noise(arm, seed, condition, obj)

    part = analyse_premise(write_study(tmp_path, score), PLAN)["test_sets"]["seen"]["box"]["best_rank"]
    assert part["verdict"] == "does not hold"
    assert part["called"] == ["lora128"]


def test_ranks_that_score_alike_call_no_rank(tmp_path) -> None:
    def score(arm: str, seed: int, condition: str, obj: int) -> float:
        return base(condition, obj) + noise(arm, seed, condition, obj)

    part = analyse_premise(write_study(tmp_path, score), PLAN)["test_sets"]["seen"]["point"]
    assert part["best_rank"]["verdict"] == "within noise"
    # Alike ranks gain nothing by an oracle; the seeds of one rank do: never "holds".
    assert part["oracles"]["ranks"]["tests"]["Oracle-Instance"]["gain"]["value"] == pytest.approx(
        0.0, abs=1e-9
    )
    assert part["oracles"]["ranks"]["tests"]["Oracle-Instance"]["verdict"] == "does not hold"


def test_oracles_match_garasam_oracle_per_seed_and_beat_the_noise_oracle_when_ranks_split_objects(
    tmp_path,
) -> None:
    def score(arm: str, seed: int, condition: str, obj: int) -> float:
        # LoRA-16 is far better on even objects, LoRA-256 on odd ones: the rank matters per object.
        bonus = 0.25 * ((arm == "lora16" and obj % 2 == 0) or (arm == "lora256" and obj % 2 == 1))
        return base(condition, obj) + bonus + noise(arm, seed, condition, obj)

    eval_dir = write_study(tmp_path, score)
    part = analyse_premise(eval_dir, PLAN)["test_sets"]["seen"]["point"]
    ranks = part["oracles"]["ranks"]
    scores = load_scores([eval_dir / "seen" / "objects.csv"])
    for oracle in ("Oracle-Corrupt", "Oracle-Instance"):
        per_seed = [
            oracle_summary(scores, [run_name(a, s) for a in RANKS])["prompts"]["point"]["iou"][oracle][
                "degrade"
            ]
            for s in PLAN.seeds
        ]
        assert ranks["iou"][oracle]["value"] == pytest.approx(100 * np.mean(per_seed), abs=0.01)
    assert ranks["tests"]["Oracle-Instance"]["verdict"] == "holds"
    assert ranks["tests"]["Oracle-Instance"]["gain"]["value"] == pytest.approx(12.5, abs=1.5)


@pytest.mark.parametrize(("gara_is", "share"), [("instance oracle", 100.0), ("best rank", 0.0)])
def test_garas_share_of_the_instance_oracles_gain(tmp_path, gara_is: str, share: float) -> None:
    def rank_score(arm: str, seed: int, condition: str, obj: int) -> float:
        bonus = 0.2 * ((arm == "lora16" and obj % 2 == 0) or (arm == "lora256" and obj % 2 == 1))
        return base(condition, obj) + bonus + 0.05 * (arm == "lora16")

    def score(arm: str, seed: int, condition: str, obj: int) -> float:
        if arm != "gara":
            return rank_score(arm, seed, condition, obj)
        if gara_is == "best rank":
            return rank_score("lora16", seed, condition, obj)
        return max(rank_score(a, seed, condition, obj) for a in RANKS)

    result = analyse_premise(write_study(tmp_path, score), PLAN)["test_sets"]["seen"]["box"]["gara_share"]
    assert result["share_percent"]["value"] == pytest.approx(share, abs=0.01)


def test_an_object_scored_twice_under_one_degradation_is_refused_by_file(tmp_path) -> None:
    eval_dir = write_study(tmp_path, lambda a, s, c, o: base(c, o))
    path = eval_dir / "seen" / "objects.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[-1].replace(",1,box,", ",2,box,")]) + "\n")
    with pytest.raises(DataError, match=r"objects\.csv: .* twice under gauss_noise"):
        analyse_premise(eval_dir, PLAN)


def test_a_missing_model_is_refused_by_file(tmp_path) -> None:
    eval_dir = write_study(tmp_path, lambda a, s, c, o: base(c, o))
    path = eval_dir / "seen" / "objects.csv"
    kept = [line for line in path.read_text().splitlines() if not line.startswith("gara@s1,")]
    path.write_text("\n".join(kept) + "\n")
    with pytest.raises(DataError, match=r"objects\.csv: no point-prompt scores of gara@s1"):
        analyse_premise(eval_dir, PLAN)


def test_the_premise_needs_the_ranks_gara_and_two_seeds() -> None:
    assert premise_applies(PLAN)
    assert not premise_applies(StudyPlan(1, 1, 1, 1, arms=("frozen", "lora16", "gara")))
    assert not premise_applies(StudyPlan(1, 1, 1, 1, arms=PLAN.arms, seeds=(0,)))
