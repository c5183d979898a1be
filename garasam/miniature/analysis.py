"""The miniature study's analysis: per-arm estimates with bootstrap 95% intervals, differences from the
frozen model and between arms, and the paper's five claims judged as pre-registered (docs/miniature.md).

Input: the evaluation folders the runner wrote (`eval/<test set>/objects.csv` and `results.json`).
Values are IoU / Dice in points (0-100) in every output.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from garasam.eval.markdown import table
from garasam.eval.report import read_objects_csv
from garasam.eval.stats import Bootstrap, Estimate, Scores, stack_scores
from garasam.miniature.plan import BASELINES, PROMPTS, VARIANT_OF, StudyPlan, run_name
from garasam.miniature.premise import analyse_premise, premise_applies

METRICS = ("iou", "dice")
RANK_SPREAD = 1.0  # components: claim 4's threshold for "varies"


def analyse(eval_dir: Path, plan: StudyPlan) -> dict[str, Any]:
    """Estimates, differences, claims and Markdown tables for every test set that was evaluated."""
    test_sets = sorted(p.name for p in Path(eval_dir).iterdir() if (p / "objects.csv").is_file())
    tables: dict[str, Any] = {}
    estimates: dict[str, Any] = {}
    boots: dict[str, dict[str, _TestSet]] = {}
    for test_set in test_sets:
        folder = Path(eval_dir) / test_set
        sets = {prompt: _TestSet(folder, prompt, plan) for prompt in PROMPTS}
        boots[test_set] = sets
        estimates[test_set] = {prompt: sets[prompt].summary() for prompt in PROMPTS}
        tables[test_set] = _tables(sets, plan)
    gates = _gate_spreads(Path(eval_dir) / "seen" / "results.json", plan) if "seen" in test_sets else {}
    claims = judge_claims(boots, plan, gates)
    markdown = _markdown(tables, claims, gates, plan)
    found: dict[str, Any] = {"estimates": estimates, "claims": claims, "gate_spreads": gates}
    if premise_applies(plan):
        premise = analyse_premise(Path(eval_dir), plan)
        markdown += "\n## The paper's premise (Fig. 2)\n\n" + premise.pop("markdown")
        found["premise"] = premise
    return {**found, "markdown": markdown}


class _TestSet:
    """Per-object scores of every arm on one test set and prompt, with one shared bootstrap."""

    def __init__(self, folder: Path, prompt: str, plan: StudyPlan) -> None:
        rows = [r for r in read_objects_csv(folder / "objects.csv") if r["prompt"] == prompt]
        self.conditions = [
            "clean",
            *dict.fromkeys(r["degradation"] for r in rows if r["degradation"] != "clean"),
        ]
        self.objects = sorted({f"{r['image_id']}/{r['object']}" for r in rows})
        by_model: dict[str, dict[str, dict[str, dict[str, float]]]] = defaultdict(lambda: defaultdict(dict))
        for metric in METRICS:
            for r in rows:
                key = f"{r['image_id']}/{r['object']}"
                by_model[(r["model"], metric)][r["degradation"]][key] = float(r[metric])  # type: ignore[index]
        self.arms = [arm for arm in plan.arms if run_name(arm, plan.seeds[0]) in {r["model"] for r in rows}]
        self.scores: dict[tuple[str, str], Scores] = {}
        for arm in self.arms:
            seeds = [0] if arm == "frozen" else plan.seeds
            for metric in METRICS:
                per_seed = [by_model[(run_name(arm, s), metric)] for s in seeds]  # type: ignore[index]
                self.scores[(arm, metric)] = stack_scores(per_seed, self.conditions, self.objects)
        self.boot = Bootstrap(len(self.objects), plan.bootstrap_replicates, seed=0)

    def estimate(self, arm: str, statistic: str, metric: str = "iou") -> Estimate:
        return self.boot.estimate(arm, self.scores[(arm, metric)], statistic)

    def difference(self, a: str, b: str, statistic: str, metric: str = "iou") -> Estimate:
        return self.boot.difference(a, self.scores[(a, metric)], b, self.scores[(b, metric)], statistic)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"objects": len(self.objects), "arms": {}}
        for arm in self.arms:
            entry = {
                f"{metric}_{stat}": _as_dict(self.estimate(arm, stat, metric))
                for metric in METRICS
                for stat in ("clear", "degrade", "gap")
            }
            if arm != "frozen":
                for stat in ("clear", "degrade"):
                    entry[f"iou_{stat}_minus_frozen"] = _as_dict(self.difference(arm, "frozen", stat))
            out["arms"][arm] = entry
        return out


def judge_claims(
    boots: dict[str, dict[str, _TestSet]], plan: StudyPlan, gates: dict[str, Any]
) -> list[dict[str, Any]]:
    """The paper's claims (1)-(5), each as holds / does not hold / within noise with its numbers."""
    claims = []

    def tests(pairs: list[tuple[str, str, str, str, str, bool]]) -> list[dict[str, Any]]:
        # (test set, prompt, a, b, statistic, flip): estimate of a - b (or b - a when flip)
        found = []
        for test_set, prompt, a, b, statistic, flip in pairs:
            sets = boots.get(test_set, {})
            if prompt not in sets or a not in sets[prompt].arms or b not in sets[prompt].arms:
                continue
            est = (
                sets[prompt].difference(b, a, statistic) if flip else sets[prompt].difference(a, b, statistic)
            )
            found.append(
                {
                    "test_set": test_set,
                    "prompt": prompt,
                    "a": a,
                    "b": b,
                    "statistic": statistic,
                    "flipped": flip,
                    **_as_dict(est),
                    "verdict": est.verdict(),
                }
            )
        return found

    every = [(t, p) for t in ("seen", "zero_shot") for p in PROMPTS]
    claims.append(
        _claim(
            "(1) GaRA's degraded IoU above frozen's (seen and zero-shot, point and box)",
            tests([(t, p, "gara", "frozen", "degrade", False) for t, p in every]),
        )
    )
    claims.append(
        _claim(
            "(2) GaRA's degraded IoU at least each fixed-rank LoRA's and MoE-LoRA's (seen)",
            tests([("seen", p, "gara", b, "degrade", False) for p in PROMPTS for b in BASELINES]),
        )
    )
    claims.append(
        _claim(
            "(3) GaRA's clear IoU at least frozen's (seen and zero-shot, point and box)",
            tests([(t, p, "gara", "frozen", "clear", False) for t, p in every]),
        )
    )
    claims.append(_rank_claim(gates))
    claims.append(
        _claim(
            "(5) GaRA's clear-minus-degraded gap no larger than frozen's (frozen gap - GaRA gap)",
            tests([(t, p, "gara", "frozen", "gap", True) for t, p in every]),
        )
    )
    return claims


def _claim(text: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """All parts hold: holds; any part's interval on the wrong side: does not hold; else within noise."""
    verdicts = [p["verdict"] for p in parts]
    if not parts:
        verdict = "not measured"
    elif "does not hold" in verdicts:
        verdict = "does not hold"
    elif all(v == "holds" for v in verdicts):
        verdict = "holds"
    else:
        verdict = "within noise"
    return {"claim": text, "verdict": verdict, "parts": parts}


def _gate_spreads(results_file: Path, plan: StudyPlan) -> dict[str, Any]:
    """Per GaRA seed: the spread (max - min) of the mean active rank across conditions (averaged over
    blocks) and across blocks (averaged over conditions), on the seen test set."""
    if not results_file.is_file():
        return {}
    gates = json.loads(results_file.read_text())["gates"]
    spreads = {}
    for seed in plan.seeds:
        rows = [g for g in gates if g["model"] == run_name("gara", seed)]
        if not rows:
            continue
        grid: dict[tuple[str, str], float] = {
            (g["layer"], g["degradation"]): g["mean_active_rank"] for g in rows
        }
        layers = list(dict.fromkeys(g["layer"] for g in rows))
        conditions = list(dict.fromkeys(g["degradation"] for g in rows))
        by_condition = [np.mean([grid[(layer, c)] for layer in layers]) for c in conditions]
        by_block = [np.mean([grid[(layer, c)] for c in conditions]) for layer in layers]
        spreads[str(seed)] = {
            "across_conditions": float(np.ptp(by_condition)),
            "across_blocks": float(np.ptp(by_block)),
            "per_block": {
                layer.split(".layers.")[-1].split(".")[0]: round(float(v), 2)
                for layer, v in zip(layers, by_block, strict=True)
            },
            "per_condition": {c: round(float(v), 2) for c, v in zip(conditions, by_condition, strict=True)},
        }
    return spreads


def _rank_claim(gates: dict[str, Any]) -> dict[str, Any]:
    text = f"(4) GaRA's active rank varies by degradation and by block (spread >= {RANK_SPREAD:g} component in every seed)"
    if not gates:
        return {"claim": text, "verdict": "not measured", "parts": []}
    varies = [
        g["across_conditions"] >= RANK_SPREAD and g["across_blocks"] >= RANK_SPREAD for g in gates.values()
    ]
    verdict = "holds" if all(varies) else "does not hold" if not any(varies) else "within noise"
    parts = [
        {"seed": s, **{k: round(g[k], 2) for k in ("across_conditions", "across_blocks")}}
        for s, g in gates.items()
    ]
    return {"claim": text, "verdict": verdict, "parts": parts}


def _as_dict(est: Estimate) -> dict[str, float]:
    return {
        "value": round(100 * est.value, 2),
        "low": round(100 * est.low, 2),
        "high": round(100 * est.high, 2),
    }


def _tables(sets: dict[str, _TestSet], plan: StudyPlan) -> dict[str, list[str]]:
    """Markdown tables of one test set: absolute scores, and differences from frozen with the share of
    the full fine-tuning ceiling."""
    header = ["model", "seeds"] + [
        f"{p} {s} {m.replace('iou', 'IoU').replace('dice', 'Dice')}"
        for m in METRICS
        for p in PROMPTS
        for s in ("degr", "clear")
    ]
    rows = []
    arms = sets["point"].arms
    for arm in arms:
        cells = [_label(arm), "1" if arm == "frozen" else str(len(plan.seeds))]
        for metric in METRICS:
            for prompt in PROMPTS:
                for stat in ("degrade", "clear"):
                    cells.append(sets[prompt].estimate(arm, stat, metric).format())
        rows.append(cells)
    diff_header = ["model"] + [f"{p} {s} IoU - frozen" for p in PROMPTS for s in ("degr", "clear")]
    diff_header += [f"{p} share of ceiling (degr)" for p in PROMPTS]
    diff_rows = []
    for arm in arms:
        if arm == "frozen":
            continue
        cells = [_label(arm)]
        for prompt in PROMPTS:
            for stat in ("degrade", "clear"):
                cells.append(sets[prompt].difference(arm, "frozen", stat).format())
        for prompt in PROMPTS:
            cells.append(_share(sets[prompt], arm))
        diff_rows.append(cells)
    tables = {"scores": table(header, rows), "differences": table(diff_header, diff_rows)}
    variant_header = ["variant"] + [f"{p} {s} IoU - base" for p in PROMPTS for s in ("degr", "clear")]
    variant_rows = [
        [f"{_label(arm)} - {_label(VARIANT_OF[arm])}"]
        + [
            sets[p].difference(arm, VARIANT_OF[arm], s).format()
            for p in PROMPTS
            for s in ("degrade", "clear")
        ]
        for arm in arms
        if VARIANT_OF.get(arm) in arms
    ]
    if variant_rows:
        tables["variants"] = table(variant_header, variant_rows)
    return tables


def _share(test_set: _TestSet, arm: str) -> str:
    if "full_finetune" not in test_set.arms:
        return "n/a"
    ceiling = test_set.difference("full_finetune", "frozen", "degrade").value
    gain = test_set.difference(arm, "frozen", "degrade").value
    return "n/a" if abs(ceiling) < 1e-9 else f"{100 * gain / ceiling:.0f}%"


LABELS = {
    "frozen": "frozen tiny SAM",
    "full_finetune": "full encoder fine-tuning (upper bound)",
    "lora16": "LoRA-16",
    "lora128": "LoRA-128",
    "lora256": "LoRA-256",
    "moe_lora": "MoE-LoRA (16, 128, 256)",
    "gara": "GaRA",
    "gara_unified": "GaRA, unified space (ablation)",
    "gara_space_only": "GaRA, space gate only (ablation)",
    "gara_random": "GaRA, random gating (ablation)",
    "gara_paper_loss": "GaRA, paper's loss (no IoU term)",
    "gara_gdice": "GaRA, generalised Dice",
    "gara_scale_1_16": "GaRA, scale 1/16",
}


def _label(arm: str) -> str:
    return LABELS.get(arm, arm)


def _markdown(
    tables: dict[str, Any], claims: list[dict[str, Any]], gates: dict[str, Any], plan: StudyPlan
) -> str:
    lines = []
    for test_set, parts in tables.items():
        lines += [
            f"### {test_set.replace('_', '-')} test set: IoU / Dice %, mean [95% CI]",
            "",
            *parts["scores"],
            "",
        ]
        lines += [
            f"### {test_set.replace('_', '-')} test set: difference from frozen, IoU points [95% CI]",
            "",
            *parts["differences"],
            "",
        ]
        if "variants" in parts:
            lines += [
                f"### {test_set.replace('_', '-')} test set: each variant minus its base arm, IoU points [95% CI]",
                "",
                *parts["variants"],
                "",
            ]
    lines += ["### Claims", ""]
    for claim in claims:
        lines.append(f"- **{claim['verdict']}**: {claim['claim']}")
        for part in claim["parts"]:
            if "statistic" in part:
                a, b = (part["b"], part["a"]) if part["flipped"] else (part["a"], part["b"])
                lines.append(
                    f"  - {part['test_set']}, {part['prompt']}: {part['statistic']} {a} - {b} = {part['value']:.1f} "
                    f"[{part['low']:.1f}, {part['high']:.1f}]: {part['verdict']}"
                )
            else:
                lines.append(
                    f"  - seed {part['seed']}: spread across conditions {part['across_conditions']:.1f}, "
                    f"across blocks {part['across_blocks']:.1f} components"
                )
    if gates:
        lines += ["", "### GaRA mean active rank (seen test set)", ""]
        seed = next(iter(gates))
        blocks = gates[seed]["per_block"]
        lines += table(
            ["seed", *[f"block {b}" for b in blocks]],
            [[s, *[f"{v:.1f}" for v in g["per_block"].values()]] for s, g in gates.items()],
        )
        lines.append("")
        conditions = list(gates[seed]["per_condition"])
        lines += table(
            ["seed", *conditions],
            [[s, *[f"{v:.1f}" for v in g["per_condition"].values()]] for s, g in gates.items()],
        )
    lines.append("")
    return "\n".join(lines)
