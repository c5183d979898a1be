"""The robust-video miniature's analysis: per-arm J&F with bootstrap 95% intervals over clips (seeds
redrawn per arm), differences, and RobustPVOS's five claims judged as pre-registered
(docs/video-miniature.md).

Input: the records the evaluation wrote (`eval/<test set>/records/**.json`, one per model, protocol,
condition and clip, with each clip's intensity curve and GaRA's per-frame gate records). Values are
J&F x 100 in every output.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from garasam.eval.stats import Bootstrap, Estimate, stack_scores
from garasam.video.evaluate import sequence_scores
from garasam.video.study_plan import TEST_SETS, VideoStudyPlan, run_name

RANK_SPREAD = 1.0  # components: claim 5's threshold for "varies"
GATED_ARMS = ("gara_enc", "gara_enc_mem")


def read_records(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(Path(folder).rglob("*.json"))]


class _Cell:
    """Per-clip J&F of every arm on one test set and protocol, with one shared bootstrap."""

    def __init__(self, records: list[dict[str, Any]], protocol: str, plan: VideoStudyPlan) -> None:
        table = sequence_scores([r for r in records if r["protocol"] == protocol])
        self.conditions = ["clean", *sorted({c for (_, _, c) in table if c != "clean"})]
        self.clips = sorted({clip for per_clip in table.values() for clip in per_clip})
        models = {m for (m, _, _) in table}
        self.arms = [a for a in plan.arms if run_name(a, plan.seeds[0]) in models]
        self.scores = {}
        for arm in self.arms:
            seeds = [0] if arm == "frozen" else plan.seeds
            per_seed = [
                {c: table.get((run_name(arm, s), protocol, c), {}) for c in self.conditions} for s in seeds
            ]
            self.scores[arm] = stack_scores(per_seed, self.conditions, self.clips)
        self.boot = Bootstrap(len(self.clips), plan.bootstrap_replicates, seed=0)

    def estimate(self, arm: str, statistic: str) -> Estimate:
        return self.boot.estimate(arm, self.scores[arm], statistic)

    def difference(self, a: str, b: str, statistic: str) -> Estimate:
        return self.boot.difference(a, self.scores[a], b, self.scores[b], statistic)


def analyse(eval_dir: Path, plan: VideoStudyPlan) -> dict[str, Any]:
    """Estimates, differences, the claims and Markdown for every evaluated test set."""
    cells: dict[tuple[str, str], _Cell] = {}
    records_by_set = {}
    for test_set in TEST_SETS:
        folder = Path(eval_dir) / test_set / "records"
        if folder.is_dir():
            records_by_set[test_set] = read_records(folder)
            for protocol in plan.protocols:
                cells[(test_set, protocol)] = _Cell(records_by_set[test_set], protocol, plan)
    estimates = {
        f"{test_set}/{protocol}": {
            arm: {
                stat: _as_dict(cell.estimate(arm, stat))
                | (
                    {"minus_frozen": _as_dict(cell.difference(arm, "frozen", stat))}
                    if arm != "frozen"
                    else {}
                )
                for stat in ("clear", "degrade")
            }
            for arm in cell.arms
        }
        for (test_set, protocol), cell in cells.items()
    }
    gates = gate_analysis(records_by_set.get("seen", []), plan)
    claims = judge_claims(cells, gates)
    return {
        "estimates": estimates,
        "claims": claims,
        "gates": gates,
        "markdown": _markdown(estimates, claims),
    }


def judge_claims(cells: dict[tuple[str, str], _Cell], gates: dict[str, Any]) -> list[dict[str, Any]]:
    """Claims (1)-(5) of docs/video-miniature.md, each with its parts and numbers."""

    def parts(a: str, b: str, statistic: str, rule: str) -> list[dict[str, Any]]:
        found = []
        for (test_set, protocol), cell in sorted(cells.items()):
            if a in cell.arms and b in cell.arms:
                est = cell.difference(a, b, statistic)
                found.append(
                    {
                        "test_set": test_set,
                        "protocol": protocol,
                        "difference": f"{a} - {b}",
                        "statistic": statistic,
                        **_as_dict(est),
                        "verdict": _verdict(est, rule),
                    }
                )
        return found

    claims = [
        ("1", "per-frame GaRA's clean J&F below frozen's", parts("gara_enc", "frozen", "clear", "below")),
        (
            "2",
            "per-frame GaRA's degraded J&F not above frozen's",
            parts("gara_enc", "frozen", "degrade", "not_above"),
        ),
        (
            "3",
            "encoder + memory GaRA's degraded J&F above per-frame GaRA's",
            parts("gara_enc_mem", "gara_enc", "degrade", "above"),
        ),
        (
            "4",
            "encoder + memory GaRA's degraded J&F above frozen's, its clean J&F not below",
            parts("gara_enc_mem", "frozen", "degrade", "above")
            + parts("gara_enc_mem", "frozen", "clear", "not_below"),
        ),
        (
            "5",
            "the gates' active rank varies by degradation, block, intensity and over time",
            gates.get("parts", []),
        ),
    ]
    return [
        {"claim": n, "text": t, "parts": p, "verdict": _combine([x["verdict"] for x in p])}
        for n, t, p in claims
    ]


def _verdict(est: Estimate, rule: str) -> str:
    above, below = est.low > 0, est.high < 0
    if rule == "above":
        return "holds" if above else "does not hold" if below else "within noise"
    if rule == "below":
        return "holds" if below else "does not hold" if above else "within noise"
    if rule == "not_above":  # holds below zero or within noise (the doc asks to say which)
        return "does not hold" if above else "holds (below zero)" if below else "holds (within noise)"
    if rule == "not_below":
        return "does not hold" if below else "holds (above zero)" if above else "holds (within noise)"
    raise ValueError(rule)


def _combine(verdicts: list[str]) -> str:
    if not verdicts:
        return "not measured"
    if any(v == "does not hold" for v in verdicts):
        return "does not hold"
    if all(v.startswith("holds") for v in verdicts):
        return "holds"
    return "within noise"


def gate_analysis(records: list[dict[str, Any]], plan: VideoStudyPlan) -> dict[str, Any]:
    """Claim 5's four parts from the gated arms' `semi` records on the seen test set."""
    out: dict[str, Any] = {"parts": []}
    for arm in GATED_ARMS:
        if arm not in plan.arms:
            continue
        per_seed = []
        rhos: dict[str, list[float]] = defaultdict(list)
        for seed in plan.seeds:
            mine = [
                r
                for r in records
                if r["model"] == run_name(arm, seed) and r["protocol"] == "semi" and r.get("gates")
            ]
            if not mine:
                continue
            by_condition: dict[str, list[float]] = defaultdict(list)
            by_layer: dict[str, list[float]] = defaultdict(list)
            ranges = []
            for record in mine:
                frames = sorted(record["gates"], key=int)
                series = []
                for frame in frames:
                    layers = [v for obj in record["gates"][frame].values() for v in obj.values()]
                    series.append(float(np.mean(layers)))
                    for obj in record["gates"][frame].values():
                        for layer, rank in obj.items():
                            by_layer[layer].append(rank)
                by_condition[record["condition"]].extend(series)
                ranges.append(max(series) - min(series))
                curve = record.get("intensity")
                if curve is not None and len(series) >= 3:
                    rho = _spearman(np.array([curve[int(f)] for f in frames]), np.array(series))
                    if not math.isnan(rho):
                        rhos[record["clip"]].append(rho)
            condition_means = [float(np.mean(v)) for v in by_condition.values()]
            layer_means = [float(np.mean(v)) for v in by_layer.values()]
            per_seed.append(
                {
                    "seed": seed,
                    "condition_spread": max(condition_means) - min(condition_means),
                    "layer_spread": max(layer_means) - min(layer_means),
                    "within_clip_range": float(np.mean(ranges)),
                    "mean_rank_by_condition": {c: float(np.mean(v)) for c, v in by_condition.items()},
                }
            )
        if not per_seed:
            continue
        out[arm] = {"seeds": per_seed}
        for key, name in (
            ("condition_spread", "by degradation"),
            ("layer_spread", "by block"),
            ("within_clip_range", "over time"),
        ):
            values = [s[key] for s in per_seed]
            met = sum(v >= RANK_SPREAD for v in values)
            verdict = "holds" if met == len(values) else "does not hold" if met == 0 else "within noise"
            out["parts"].append({"arm": arm, "part": name, "values": values, "verdict": verdict})
        clip_rhos = np.array([np.mean(v) for v in rhos.values()])
        if clip_rhos.size:
            draws = np.random.default_rng(0).integers(
                clip_rhos.size, size=(plan.bootstrap_replicates, clip_rhos.size)
            )
            low, high = np.percentile(clip_rhos[draws].mean(axis=1), [2.5, 97.5])
            est = Estimate(float(clip_rhos.mean()), float(low), float(high))
            out["parts"].append(
                {
                    "arm": arm,
                    "part": "with intensity (Spearman, mean over clips)",
                    **_as_dict(est, scale=1.0),
                    "verdict": "holds" if est.excludes_zero else "within noise",
                }
            )
    return out


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's correlation (average ranks for ties); NaN when either series is constant."""

    def ranks(values: np.ndarray) -> np.ndarray:
        order = np.argsort(values, kind="stable")
        result = np.empty(len(values))
        result[order] = np.arange(len(values))
        for value in np.unique(values):  # ties share their mean rank
            tied = values == value
            result[tied] = result[tied].mean()
        return result

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def _as_dict(est: Estimate, scale: float = 100.0) -> dict[str, float]:
    return {"value": scale * est.value, "low": scale * est.low, "high": scale * est.high}


def _fmt(entry: dict[str, float]) -> str:
    return f"{entry['value']:.1f} [{entry['low']:.1f}, {entry['high']:.1f}]"


def _markdown(estimates: dict[str, Any], claims: list[dict[str, Any]]) -> str:
    lines = ["# The robust-video miniature", ""]
    for cell, arms in estimates.items():
        lines += [
            f"## {cell}: J&F x 100, mean [95% CI]",
            "",
            "| arm | Clean | Degrade | Clean - frozen | Degrade - frozen |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for arm, entry in arms.items():
            diff = [
                _fmt(entry[s]["minus_frozen"]) if "minus_frozen" in entry[s] else "-"
                for s in ("clear", "degrade")
            ]
            lines.append(
                f"| {arm} | {_fmt(entry['clear'])} | {_fmt(entry['degrade'])} | {diff[0]} | {diff[1]} |"
            )
        lines.append("")
    lines += ["## Claims", ""]
    for claim in claims:
        lines.append(f"**({claim['claim']}) {claim['text']}: {claim['verdict']}.**")
        for part in claim["parts"]:
            if "difference" in part:
                lines.append(
                    f"- {part['test_set']}, {part['protocol']}, {part['statistic']}: {part['difference']} = "
                    f"{_fmt(part)}: {part['verdict']}"
                )
            elif "values" in part:
                values = ", ".join(f"{v:.1f}" for v in part["values"])
                lines.append(
                    f"- {part['arm']}, {part['part']}: {values} components per seed: {part['verdict']}"
                )
            else:
                lines.append(
                    f"- {part['arm']}, {part['part']}: {part['value']:.2f} [{part['low']:.2f}, {part['high']:.2f}]: "
                    f"{part['verdict']}"
                )
        lines.append("")
    return "\n".join(lines) + "\n"
