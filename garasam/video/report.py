"""The video evaluation's report: `results.json` (every record and the aggregates), `summary.md`
(J&F per model, protocol and condition with 95% intervals; J, F, recall and decay) and a plot.

Intervals are percentile bootstraps over sequences (2,000 redraws, seed 0), the same redraws for
every model, so that two models' intervals describe the same resampled benchmark.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from garasam.eval.markdown import table
from garasam.eval.plots import model_colour, save_figure
from garasam.eval.stats import Estimate
from garasam.io import atomic_write_text
from garasam.video.evaluate import sequence_scores

REPLICATES = 2000
MEASURES = ("J&F", "J", "F", "J_recall", "F_recall", "J_decay", "F_decay")


def aggregate(records: Sequence[Mapping[str, Any]], clips: Sequence[str]) -> dict[str, Any]:
    """model -> protocol -> condition -> measure -> {value, low, high} (means over sequences)."""
    rng = np.random.default_rng(0)
    draws = rng.integers(len(clips), size=(REPLICATES, len(clips)))
    column = {name: i for i, name in enumerate(clips)}
    out: dict[str, Any] = {}
    for measure in MEASURES:
        for (model, protocol, condition), per_clip in sequence_scores(records, measure).items():
            values = np.full(len(clips), np.nan)
            for clip, value in per_clip.items():
                values[column[clip]] = value
            estimate = _bootstrap(values, draws)
            out.setdefault(model, {}).setdefault(protocol, {}).setdefault(condition, {})[measure] = {
                "value": estimate.value,
                "low": estimate.low,
                "high": estimate.high,
                "sequences": int(np.isfinite(values).sum()),
            }
    return out


def _bootstrap(values: np.ndarray, draws: np.ndarray) -> Estimate:
    finite = np.isfinite(values)
    if not finite.any():
        return Estimate(math.nan, math.nan, math.nan)
    point = float(values[finite].mean())
    redrawn = np.nanmean(np.where(finite[draws], values[draws], np.nan), axis=1)
    redrawn = redrawn[np.isfinite(redrawn)]
    low, high = np.percentile(redrawn, [2.5, 97.5]) if redrawn.size else (math.nan, math.nan)
    return Estimate(point, float(low), float(high))


def write_video_report(
    out: Path, records: Sequence[Mapping[str, Any]], clips: Sequence[str], settings: Mapping[str, Any]
) -> dict[str, Any]:
    """Write results.json, summary.md and one plot per protocol; return the aggregates."""
    summary = aggregate(records, clips)
    atomic_write_text(
        out / "results.json",
        json.dumps(
            {"settings": dict(settings), "clips": list(clips), "summary": summary, "records": list(records)},
            indent=1,
        )
        + "\n",
    )
    conditions = list(dict.fromkeys(r["condition"] for r in records))
    protocols = list(dict.fromkeys(r["protocol"] for r in records))
    models = list(dict.fromkeys(r["model"] for r in records))
    lines = [
        "# Video evaluation",
        "",
        f"{len(clips)} clip(s) of `{settings.get('data')}`; suite {settings.get('suite')}, seed {settings.get('seed')}, "
        f"intensity curve low {settings.get('intensity_low')}; J&F x 100 with 95% bootstrap intervals over sequences.",
        "",
    ]
    for protocol in protocols:
        lines += [f"## Protocol `{protocol}`", ""]
        rows = []
        for model in models:
            cells = summary.get(model, {}).get(protocol, {})
            rows.append([model] + [_cell(cells.get(c, {}).get("J&F")) for c in conditions])
        lines += table(["model", *conditions], rows) + [""]
        detail = []
        for model in models:
            for condition in conditions:
                cells = summary.get(model, {}).get(protocol, {}).get(condition, {})
                detail.append(
                    [model, condition] + [_number(cells.get(m, {}).get("value")) for m in MEASURES[1:]]
                )
        lines += table(
            ["model", "condition", "J", "F", "J recall", "F recall", "J decay", "F decay"],
            detail,
            text_columns=2,
        )
        lines += ["", f"![J&F per condition](jf_{protocol}.png)", ""]
        _plot(summary, models, protocol, conditions, out / f"jf_{protocol}.png")
    atomic_write_text(out / "summary.md", "\n".join(lines) + "\n")
    return summary


def _cell(entry: Mapping[str, float] | None) -> str:
    if not entry or entry["value"] is None or math.isnan(entry["value"]):
        return "n/a"
    return Estimate(entry["value"], entry["low"], entry["high"]).format()


def _number(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def _plot(
    summary: Mapping[str, Any], models: list[str], protocol: str, conditions: list[str], path: Path
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(conditions) * max(1, len(models)) / 2 + 2), 3.2))
    width = 0.8 / max(1, len(models))
    for index, model in enumerate(models):
        cells = summary.get(model, {}).get(protocol, {})
        values = [100 * cells.get(c, {}).get("J&F", {}).get("value", math.nan) for c in conditions]
        low = [100 * cells.get(c, {}).get("J&F", {}).get("low", math.nan) for c in conditions]
        high = [100 * cells.get(c, {}).get("J&F", {}).get("high", math.nan) for c in conditions]
        x = np.arange(len(conditions)) + (index - (len(models) - 1) / 2) * width
        errors = np.array([np.subtract(values, low), np.subtract(high, values)])
        ax.bar(x, values, width, yerr=errors, label=model, color=model_colour(index), capsize=2)
    ax.set_xticks(np.arange(len(conditions)), conditions, rotation=30, ha="right")
    ax.set_ylabel("J&F (x100)")
    ax.set_title(f"J&F per condition, protocol {protocol}")
    ax.legend(fontsize=8)
    return save_figure(fig, path)
