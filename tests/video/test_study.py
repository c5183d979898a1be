"""The robust-video miniature: its plan's checks, the claims judged as docs/video-miniature.md
pre-registers them (on fabricated records whose answer is known), the gates' analysis, and one
small run end to end (outputs and intervals, never a verdict)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from garasam.errors import ConfigError
from garasam.video.study_analysis import _Cell, _spearman, _verdict, gate_analysis, judge_claims
from garasam.video.study_plan import PLANS, VideoStudyPlan, run_name

PLAN = VideoStudyPlan(
    train_clips=1,
    test_clips=12,
    steps=1,
    seeds=(0,),
    arms=("frozen", "gara_enc", "gara_enc_mem"),
    bootstrap_replicates=500,
)


def _record(model: str, condition: str, clip: int, jf: float, protocol: str = "semi") -> dict:
    return {
        "model": model,
        "protocol": protocol,
        "condition": condition,
        "clip": f"c{clip}",
        "objects": {"1": {"J&F": jf, "J": jf, "F": jf}},
    }


def _records(scores: dict[str, dict[str, float]]) -> list[dict]:
    """Every clip's J&F per model and condition, with a clip-level offset shared by all models (as
    clips differ in difficulty) and no other noise."""
    offsets = np.linspace(-0.1, 0.1, PLAN.test_clips)
    return [
        _record(run_name(arm, 0), condition, clip, value + offsets[clip])
        for arm, by_condition in scores.items()
        for condition, value in by_condition.items()
        for clip in range(PLAN.test_clips)
    ]


def test_the_claims_are_judged_as_registered() -> None:
    records = _records(
        {
            "frozen": {"clean": 0.7, "fog": 0.5, "snow": 0.5},
            "gara_enc": {"clean": 0.65, "fog": 0.5, "snow": 0.5},  # clean below frozen, degraded equal
            "gara_enc_mem": {"clean": 0.7, "fog": 0.6, "snow": 0.6},  # degraded above both
        }
    )
    cells = {(t, "semi"): _Cell(records, "semi", PLAN) for t in ("seen", "zero_shot")}
    claims = {c["claim"]: c for c in judge_claims(cells, {})}
    assert claims["1"]["verdict"] == "holds"
    assert claims["1"]["parts"][0]["value"] == pytest.approx(-5.0)
    assert claims["2"]["verdict"] == "holds" and claims["2"]["parts"][0]["verdict"] == "holds (within noise)"
    assert claims["3"]["verdict"] == "holds" and claims["4"]["verdict"] == "holds"
    assert claims["5"]["verdict"] == "not measured"
    worse = _records(
        {
            "frozen": {"clean": 0.7, "fog": 0.5},
            "gara_enc": {"clean": 0.75, "fog": 0.6},
            "gara_enc_mem": {"clean": 0.6, "fog": 0.55},
        }
    )
    cells = {("seen", "semi"): _Cell(worse, "semi", PLAN)}
    claims = {c["claim"]: c for c in judge_claims(cells, {})}
    assert [claims[n]["verdict"] for n in "1234"] == ["does not hold"] * 4


@pytest.mark.parametrize(
    "low, high, rule, verdict",
    [
        (0.1, 0.2, "above", "holds"),
        (-0.2, -0.1, "above", "does not hold"),
        (-0.1, 0.1, "above", "within noise"),
        (-0.2, -0.1, "below", "holds"),
        (-0.2, -0.1, "not_above", "holds (below zero)"),
        (0.1, 0.2, "not_above", "does not hold"),
        (-0.1, 0.1, "not_below", "holds (within noise)"),
        (-0.2, -0.1, "not_below", "does not hold"),
    ],
)
def test_each_rule_reads_the_interval(low: float, high: float, rule: str, verdict: str) -> None:
    from garasam.eval.stats import Estimate

    assert _verdict(Estimate((low + high) / 2, low, high), rule) == verdict


def test_spearman_matches_scipy() -> None:
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.integers(0, 4, 7).astype(float), rng.normal(size=7)
        expected = spearmanr(x, y).statistic
        got = _spearman(x, y)
        assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)
    assert math.isnan(_spearman(np.ones(5), np.arange(5.0)))


def test_the_gates_parts_read_rank_per_frame_block_and_intensity() -> None:
    """Ranks that follow the intensity curve, differ by block and by condition: all four parts hold;
    constant ranks: none does."""
    curve = [1.0, 0.4, 0.6, 0.9, 0.3]

    def gates(rank_of) -> dict:
        return {str(f): {"1": {"block0": rank_of(f), "block1": rank_of(f) + 3}} for f in range(1, 5)}

    def records(rank_of_condition) -> list[dict]:
        out = []
        for arm in ("gara_enc", "gara_enc_mem"):
            for condition, shift in (("clean", 0.0), ("fog", 2.0)):
                for clip in range(6):
                    record = _record(run_name(arm, 0), condition, clip, 0.5)
                    record["gates"] = gates(lambda f, s=shift: rank_of_condition(f, s))
                    record["intensity"] = curve if condition != "clean" else None
                    out.append(record)
        return out

    varied = gate_analysis(records(lambda f, shift: 10 + 5 * curve[f] + shift), PLAN)
    assert {p["verdict"] for p in varied["parts"]} == {"holds"}
    assert len(varied["parts"]) == 4 * 2 and varied["gara_enc"]["seeds"][0][
        "condition_spread"
    ] == pytest.approx(2.0)
    flat = gate_analysis(records(lambda f, shift: 10.0), PLAN)
    parts = {p["part"]: p["verdict"] for p in flat["parts"] if p["arm"] == "gara_enc"}
    assert parts == {"by degradation": "does not hold", "by block": "holds", "over time": "does not hold"}


def test_the_plan_refuses_what_cannot_run() -> None:
    with pytest.raises(ConfigError, match="unknown video arm"):
        replace(PLAN, arms=("frozen", "gara"))
    with pytest.raises(ConfigError, match="keep the arm 'frozen'"):
        replace(PLAN, arms=("gara_enc",))
    with pytest.raises(ConfigError, match="training windows of 2 to 8 frames"):
        replace(PLAN, train_frames=9)
    assert PLANS["study"].arms[0] == "frozen" and len(PLANS["study"].seeds) == 3


@pytest.mark.slow
def test_a_small_run_writes_every_output_with_intervals(tmp_path: Path) -> None:
    import sys

    from garasam.video.study import run_video_study

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from check_video_demo import check

    plan = replace(PLANS["quick"], train_clips=2, test_clips=2, steps=2, clip_frames=4, train_frames=2)
    summary = run_video_study(tmp_path / "out", plan, device="cpu", log=lambda _: None)
    (tmp_path / "out" / "demo.md").write_text(summary["markdown"])
    assert check(tmp_path / "out") == []
    assert json.loads((tmp_path / "out" / "study.json").read_text())["plan"]["steps"] == 2
    again = run_video_study(tmp_path / "out", plan, device="cpu", log=lambda _: None)  # resumes: all done
    assert again["estimates"] == summary["estimates"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo", "--video", "--checkpoint", "sam.pth"], "--video runs on the bundled sam2.1_tiny"),
        (["demo", "--video", "--data", "robustseg:x"], "--data do not apply"),
        (["study", "--video", "--arms", "frozen,gara"], "unknown video arm(s) ['gara']"),
        (["study", "--video", "--arms", "gara_enc"], "keep the arm 'frozen'"),
    ],
)
def test_bad_video_study_flags_are_named(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    from garasam.cli import main

    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing written
