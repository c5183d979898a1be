"""The paper's premise (its Fig. 2) measured on the study's own per-object results, as pre-registered
in docs/miniature.md ("The paper's premise"): which LoRA rank is best per degradation, whether picking
the rank per degradation (Oracle-Corrupt) or per object (Oracle-Instance) beats every single rank by
more than picking among seeds of one rank does (the noise oracle), and what share of Oracle-Instance's
gain GaRA realises.

A per-object maximum over several models lies above each of them even when they differ only by
noise, so an oracle's gain means something only against the same oracle over models that differ by
their seed alone. Intervals: the study's paired bootstrap (objects redrawn with one draw for every
model; seeds redrawn, one draw per arm, or one for a set of same-seed models an oracle combines).
Input: `eval/<test set>/objects.csv`; values in the output are IoU points (0-100).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from garasam.errors import DataError
from garasam.eval.markdown import table
from garasam.eval.report import read_objects_csv
from garasam.eval.stats import Bootstrap, Estimate, condition_means, interval
from garasam.miniature.plan import PROMPTS, StudyPlan, run_name

RANKS = ("lora16", "lora128", "lora256")
WITH_GARA = (*RANKS, "gara")
NOISE_ARM = "lora128"  # the noise oracle: the same oracle over this arm's seeds
LABELS = {"lora16": "LoRA-16", "lora128": "LoRA-128", "lora256": "LoRA-256", "gara": "GaRA"}


def premise_applies(plan: StudyPlan) -> bool:
    """The premise needs the three ranks and GaRA, and seeds enough for a noise oracle."""
    return all(arm in plan.arms for arm in WITH_GARA) and len(plan.seeds) >= 2


def analyse_premise(eval_dir: Path, plan: StudyPlan) -> dict[str, Any]:
    """Questions 1-3 per test set and prompt, with estimates, verdicts and Markdown."""
    results: dict[str, Any] = {}
    for folder in sorted(p for p in Path(eval_dir).iterdir() if (p / "objects.csv").is_file()):
        rows = read_objects_csv(folder / "objects.csv")
        results[folder.name] = {
            prompt: _Premise(_grid(folder / "objects.csv", rows, prompt, plan), plan).summary()
            for prompt in PROMPTS
        }
    return {"test_sets": results, "markdown": premise_markdown(results)}


def _grid(
    path: Path, rows: list[dict[str, str]], prompt: str, plan: StudyPlan
) -> tuple[list[str], dict[str, np.ndarray]]:
    """(conditions, clean first; run name -> [conditions, objects] IoU, NaN where not scored)."""
    rows = [r for r in rows if r["prompt"] == prompt]
    conditions = ["clean", *dict.fromkeys(r["degradation"] for r in rows if r["degradation"] != "clean")]
    objects = sorted({f"{r['image_id']}/{r['object']}" for r in rows})
    index_c = {c: i for i, c in enumerate(conditions)}
    index_o = {o: i for i, o in enumerate(objects)}
    needed = {run_name(arm, seed) for arm in WITH_GARA for seed in plan.seeds}
    values: dict[str, np.ndarray] = defaultdict(lambda: np.full((len(conditions), len(objects)), np.nan))
    for r in rows:
        if r["model"] not in needed:
            continue
        grid = values[r["model"]]
        c, o = index_c[r["degradation"]], index_o[f"{r['image_id']}/{r['object']}"]
        if not np.isnan(grid[c, o]):
            raise DataError(
                f"{path}: {r['model']} scored object {r['image_id']}/{r['object']} twice under "
                f"{r['degradation']} ({prompt} prompt); the premise reads one severity per degradation"
            )
        grid[c, o] = float(r["iou"])
    missing = sorted(needed - set(values))
    if missing:
        raise DataError(f"{path}: no {prompt}-prompt scores of {', '.join(missing)}; the premise needs them")
    return conditions, dict(values)


class _Premise:
    """One test set and prompt: every quantity as [1 + B] values, the point estimate first."""

    def __init__(self, grid: tuple[list[str], dict[str, np.ndarray]], plan: StudyPlan) -> None:
        self.conditions, self.values = grid
        self.seeds = plan.seeds
        num_objects = next(iter(self.values.values())).shape[1]
        boot = Bootstrap(num_objects, plan.bootstrap_replicates, seed=0)
        self.weights = np.vstack([np.ones((1, num_objects)), boot.weights])
        # Seed draws: one per arm (the study's), and one for the same-seed models an oracle combines.
        # GaRA's own draw goes unused (its seeds pair with the ranks' through the oracle draw) but stays
        # drawn: it is part of the random stream that produced the reported figures.
        self.draws = {
            name: boot.rng.integers(len(self.seeds), size=(plan.bootstrap_replicates, len(self.seeds)))
            for name in (*WITH_GARA, "oracle")
        }

    def _means(self, name: str) -> np.ndarray:
        return condition_means(self.values[name], self.weights)  # [1 + B, C]

    def _over_seeds(self, per_seed: np.ndarray, draw: str) -> np.ndarray:
        """[S, 1 + B] per-seed values -> [1 + B]: the seed mean, seeds redrawn in the replicates."""
        picked = per_seed[self.draws[draw], np.arange(per_seed.shape[1] - 1)[:, None] + 1].mean(1)
        return np.concatenate([[per_seed[:, 0].mean()], picked])

    def _degrade(self, name: str) -> np.ndarray:
        return np.nanmean(self._means(name)[:, 1:], axis=1)

    def _oracles(self, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(Oracle-Corrupt, Oracle-Instance) Degrade IoU over `names`, each [1 + B]."""
        corrupt = np.max(np.stack([self._means(n)[:, 1:] for n in names]), axis=0)
        stacked = np.stack([self.values[n] for n in names])
        scored = ~np.isnan(stacked).any(axis=0)  # only objects every model scored
        best = np.where(scored, np.nan_to_num(stacked, nan=0.0).max(axis=0), np.nan)
        instance = condition_means(best, self.weights)[:, 1:]
        return np.nanmean(corrupt, axis=1), np.nanmean(instance, axis=1)

    def best_rank(self) -> dict[str, Any]:
        """Question 1: each rank's IoU per degradation, each pair's difference, the rank called best."""
        per_rank = {
            arm: np.stack([self._means(run_name(arm, s)) for s in self.seeds]) for arm in RANKS
        }  # [S, 1 + B, C]
        rows = []
        for c, condition in enumerate(self.conditions[1:], start=1):
            at = {arm: self._over_seeds(per_rank[arm][:, :, c], arm) for arm in RANKS}
            pairs = {
                f"{a}-{b}": _estimate(at[a] - at[b]) for i, a in enumerate(RANKS) for b in RANKS[i + 1 :]
            }
            called = [a for a in RANKS if all(_estimate(at[a] - at[b]).low > 0 for b in RANKS if b != a)]
            rows.append(
                {
                    "degradation": condition,
                    "iou": {arm: _points(_estimate(at[arm])) for arm in RANKS},
                    "differences": {k: _points(v) for k, v in pairs.items()},
                    "called_best": called[0] if called else None,
                }
            )
        calls = {r["called_best"] for r in rows} - {None}
        verdict = "holds" if len(calls) >= 2 else "does not hold" if calls else "within noise"
        return {"per_degradation": rows, "verdict": verdict, "called": sorted(calls)}

    def _single(self, arm: str) -> np.ndarray:
        """One arm's Degrade IoU, seeds averaged (the draw shared by the same-seed models)."""
        return self._over_seeds(np.stack([self._degrade(run_name(arm, s)) for s in self.seeds]), "oracle")

    def _seed_oracles(self, arms: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(Oracle-Corrupt, Oracle-Instance) over each seed's models of `arms`, seeds averaged."""
        per_seed = [self._oracles([run_name(a, s) for a in arms]) for s in self.seeds]
        corrupt, instance = zip(*per_seed, strict=True)
        return self._over_seeds(np.stack(corrupt), "oracle"), self._over_seeds(np.stack(instance), "oracle")

    def oracle(self, arms: tuple[str, ...]) -> dict[str, Any]:
        """Question 2 over `arms`: each oracle's gain over the best single model, against the noise
        oracle's gain over its seeds' mean."""
        corrupt, instance = self._seed_oracles(arms)
        singles = {a: self._single(a) for a in arms}
        best = np.max(np.stack(list(singles.values())), axis=0)  # chosen again in every replicate
        noise_names = [run_name(NOISE_ARM, s) for s in self.seeds]
        noise_corrupt, noise_instance = self._oracles(noise_names)
        noise_mean = np.mean([self._degrade(n) for n in noise_names], axis=0)
        out: dict[str, Any] = {
            "models": list(arms),
            "best_single": max(singles, key=lambda a: singles[a][0]),
            "iou": {
                **{a: _points(_estimate(v)) for a, v in singles.items()},
                "Oracle-Corrupt": _points(_estimate(corrupt)),
                "Oracle-Instance": _points(_estimate(instance)),
                "noise Oracle-Corrupt": _points(_estimate(noise_corrupt)),
                "noise Oracle-Instance": _points(_estimate(noise_instance)),
                "noise seeds' mean": _points(_estimate(noise_mean)),
            },
            "tests": {},
        }
        for name, oracle, noise in (
            ("Oracle-Corrupt", corrupt, noise_corrupt),
            ("Oracle-Instance", instance, noise_instance),
        ):
            gain, noise_gain = oracle - best, noise - noise_mean
            test = _estimate(gain - noise_gain)
            out["tests"][name] = {
                "gain": _points(_estimate(gain)),
                "noise_gain": _points(_estimate(noise_gain)),
                "gain_minus_noise_gain": _points(test),
                "verdict": test.verdict(),
            }
        return out

    def gara_share(self) -> dict[str, Any]:
        """Question 3: GaRA minus the best single rank, as a share of Oracle-Instance's gain over it."""
        instance = self._seed_oracles(RANKS)[1]
        best = np.max(np.stack([self._single(a) for a in RANKS]), axis=0)
        gara = self._single("gara")
        gain = instance - best
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(np.abs(gain) > 1e-12, (gara - best) / gain, np.nan)
        return {
            "gara_minus_best_rank": _points(_estimate(gara - best)),
            "oracle_instance_gain": _points(_estimate(gain)),
            "share_percent": _points(_estimate(share)),
        }

    def summary(self) -> dict[str, Any]:
        return {
            "objects": int(self.weights.shape[1]),
            "best_rank": self.best_rank(),
            "oracles": {"ranks": self.oracle(RANKS), "ranks_and_gara": self.oracle(WITH_GARA)},
            "gara_share": self.gara_share(),
        }


def _estimate(values: np.ndarray) -> Estimate:
    if np.isnan(values[1:]).all():  # a share of a gain that is exactly zero
        return Estimate(float(values[0]), float("nan"), float("nan"))
    return interval(float(values[0]), values[1:])


def _points(est: Estimate) -> dict[str, float | None]:
    """In points; None where undefined (JSON has no NaN)."""
    return {
        key: None if np.isnan(value) else round(100 * value, 2)
        for key, value in (("value", est.value), ("low", est.low), ("high", est.high))
    }


def _fmt(p: dict[str, float | None]) -> str:
    if p["value"] is None:
        return "n/a"
    if p["low"] is None or p["high"] is None:
        return f"{p['value']:.1f}"
    return f"{p['value']:.1f} [{p['low']:.1f}, {p['high']:.1f}]"


def premise_markdown(results: dict[str, Any]) -> str:
    """The three questions' tables per test set and prompt."""
    lines = []
    for test_set, prompts in results.items():
        for prompt, part in prompts.items():
            where = f"{test_set.replace('_', '-')} test set, {prompt} prompts ({part['objects']} objects)"
            best, share = part["best_rank"], part["gara_share"]
            lines += [
                f"### Premise 1, {where}: IoU per degradation, mean [95% CI]; "
                f"the best rank depends on the corruption: **{best['verdict']}**",
                "",
                *table(
                    [
                        "degradation",
                        *(LABELS[a] for a in RANKS),
                        "16 - 128",
                        "16 - 256",
                        "128 - 256",
                        "called best",
                    ],
                    [
                        [
                            r["degradation"],
                            *(_fmt(r["iou"][a]) for a in RANKS),
                            *(_fmt(v) for v in r["differences"].values()),
                            LABELS.get(r["called_best"], "none"),
                        ]
                        for r in best["per_degradation"]
                    ],
                ),
                "",
                f"### Premise 2, {where}: oracles' Degrade IoU and their gain against the noise oracle",
                "",
                *table(
                    [
                        "models",
                        "best single",
                        "Oracle-Corrupt",
                        "Oracle-Instance",
                        "noise OC",
                        "noise OI",
                        "noise seeds' mean",
                        "OC gain - noise gain",
                        "OI gain - noise gain",
                    ],
                    [_oracle_row(o) for o in part["oracles"].values()],
                ),
                "",
                f"Premise 3, {where}: GaRA - best single rank {_fmt(share['gara_minus_best_rank'])} points; "
                f"Oracle-Instance's gain over it {_fmt(share['oracle_instance_gain'])}; GaRA's share "
                f"{_fmt(share['share_percent'])}%.",
                "",
            ]
    return "\n".join(lines)


def _oracle_row(o: dict[str, Any]) -> list[str]:
    iou, tests = o["iou"], o["tests"]
    return [
        " + ".join(LABELS[m] for m in o["models"]),
        f"{LABELS[o['best_single']]} {_fmt(iou[o['best_single']])}",
        *(
            _fmt(iou[k])
            for k in ("Oracle-Corrupt", "Oracle-Instance", "noise Oracle-Corrupt", "noise Oracle-Instance")
        ),
        _fmt(iou["noise seeds' mean"]),
        *(
            f"{_fmt(tests[k]['gain_minus_noise_gain'])}: {tests[k]['verdict']}"
            for k in ("Oracle-Corrupt", "Oracle-Instance")
        ),
    ]
