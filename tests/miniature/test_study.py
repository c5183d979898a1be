"""The miniature study end to end on a few scenes and steps: outputs, intervals, claims, resume, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from garasam.cli import main
from garasam.miniature.analysis import _claim
from garasam.miniature.plan import PLANS, StudyPlan
from garasam.miniature.runner import DONE, run_miniature

PLAN = StudyPlan(
    train_scenes=4,
    seen_scenes=2,
    zero_shot_scenes=2,
    steps=2,
    seeds=(0, 1),
    arms=("frozen", "lora16", "gara"),
    bootstrap_replicates=200,
)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("study")
    return out, run_miniature(out, PLAN, device="cpu", log=lambda _: None)


def test_every_arm_and_seed_is_trained_and_evaluated_on_both_test_sets(study) -> None:
    out, summary = study
    for name in ("lora16@s0", "lora16@s1", "gara@s0", "gara@s1"):
        assert (out / "runs" / name / DONE).is_file()
        assert list((out / "runs" / name).rglob("events.out.tfevents.*")), f"no TensorBoard log for {name}"
    for test_set in ("seen", "zero_shot"):
        results = json.loads((out / "eval" / test_set / "results.json").read_text())
        assert list(results["models"]) == ["frozen", "lora16@s0", "gara@s0", "lora16@s1", "gara@s1"]
        assert (out / "eval" / test_set / "objects.csv").is_file()
        arms = summary["estimates"][test_set]["point"]["arms"]
        assert set(arms) == {"frozen", "lora16", "gara"}
        for entry in arms.values():
            for key in ("iou_clear", "iou_degrade", "dice_clear", "dice_degrade"):
                assert entry[key]["low"] <= entry[key]["value"] <= entry[key]["high"]
    assert json.loads((out / "study.json").read_text())["plan"]["seeds"] == [0, 1]


def test_tables_show_intervals_and_every_claim_gets_a_verdict(study) -> None:
    _, summary = study
    text = summary["markdown"]
    assert "seen test set: IoU / Dice %, mean [95% CI]" in text and "zero-shot test set" in text
    assert "| GaRA | 2 |" in text and "| frozen tiny SAM | 1 |" in text
    verdicts = {"holds", "does not hold", "within noise", "not measured"}
    claims = summary["claims"]
    assert [c["claim"][:3] for c in claims] == ["(1)", "(2)", "(3)", "(4)", "(5)"]
    assert all(c["verdict"] in verdicts for c in claims)
    assert len(claims[0]["parts"]) == 4  # seen and zero-shot, point and box
    assert claims[1]["parts"] == [p for p in claims[1]["parts"] if p["b"] == "lora16"]  # only arms present
    assert set(summary["gate_spreads"]) == {"0", "1"}
    # what a bit-identical rerun needs (issue 29, reproducibility): recorded and said
    machine = summary["environment"]
    assert machine["torch_threads"] == torch.get_num_threads() and machine["torch"] == torch.__version__
    assert f"with {machine['torch_threads']} torch thread(s), torch {machine['torch']}" in text


def test_a_second_run_reuses_what_is_on_disk(study) -> None:
    out, _ = study
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob(DONE)}
    stamps[out / "eval" / "seen" / "objects.csv"] = (out / "eval" / "seen" / "objects.csv").stat().st_mtime_ns
    again = run_miniature(out, PLAN, device="cpu", log=lambda _: None)
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    assert again["claims"] == json.loads((out / "study.json").read_text())["claims"]


def test_claim_rule() -> None:
    def part(verdict: str) -> dict:
        return {"verdict": verdict}

    assert _claim("c", [part("holds"), part("holds")])["verdict"] == "holds"
    assert _claim("c", [part("holds"), part("within noise")])["verdict"] == "within noise"
    assert _claim("c", [part("holds"), part("does not hold")])["verdict"] == "does not hold"
    assert _claim("c", [])["verdict"] == "not measured"


def test_plans_are_the_pre_registered_ones() -> None:
    study = PLANS["study"]
    assert (study.train_scenes, study.seen_scenes, study.zero_shot_scenes, study.steps) == (400, 40, 40, 300)
    assert study.seeds == (0, 1, 2) and len(study.arms) == 10
    demo = PLANS["demo"]
    assert demo.arms == ("frozen", "lora128", "gara") and demo.seeds == (0,)
    assert (demo.train_scenes, demo.steps) == (study.train_scenes, study.steps)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["study", "--seeds", "0,x"], "comma-separated integers"),
        (["study", "--seeds", "0,0"], "distinct"),
        (["study", "--seeds", "-1"], "must be at least 0"),
        (["study", "--seeds", "0,4294967296"], "must be at most 4294967295"),
        (["study", "--arms", "gara,lora7"], "unknown arm"),
        (["study", "--arms", "gara"], "keep the arm 'frozen'"),
        (["demo", "--zero-shot-data", "robustseg:x"], "goes with --data"),
        (["demo", "--data", "robustseg:x"], "go together"),
        (["demo", "--steps", "0"], "argument --steps: must be at least 1"),
    ],
)
def test_bad_command_lines_are_clear_errors(argv, message, tmp_path, capsys) -> None:
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "runs").exists()
