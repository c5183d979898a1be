"""Evaluation outputs: results.json (everything), results.csv (one row per condition), objects.csv (one
row per scored object), summary.md, plots.

`summary.md` puts the headline numbers in the paper's table layout (rows = models; columns = point /
box x degraded / clear x IoU / Dice), then every metric, the per-degradation IoU and, for several
severities, the IoU per severity. Values are percentages of per-object means; "Degrade" is the mean
over the evaluated degradations (and severities), each weighing the same.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from garasam.errors import DataError
from garasam.eval.conditions import CLEAN_CONDITION
from garasam.eval.markdown import table
from garasam.eval.metrics import METRIC_LABELS, METRICS
from garasam.eval.results import Results
from garasam.io import atomic_write_text

MAX_LISTED_PROBLEMS = 50  # skipped items listed in summary.md; results.json has every one

FORMAT_VERSION = 1
CSV_COLUMNS = ("model", "dataset", "degradation", "severity", "prompt", *METRICS, "count")
OBJECT_COLUMNS = (
    "model",
    "image_id",
    "object",
    "degradation",
    "severity",
    "prompt",
    *METRICS,
    "predicted_iou",  # SAM's own IoU estimate of the mask: the ranking score of the AP
)


def results_dict(results: Results) -> dict[str, Any]:
    """Every number of the run with its config, model identities, seeds and package versions."""
    summary: dict[str, Any] = {}
    degraded = results.degraded_conditions
    for model in results.model_names:
        summary[model] = {}
        for prompt in results.prompts:
            entry = {
                "clear": _with_count(
                    results.clear(model, prompt), results.count(model, prompt, [CLEAN_CONDITION])
                ),
                "degrade": _with_count(
                    results.degrade(model, prompt), results.count(model, prompt, degraded)
                ),
                "per_degradation": {
                    name: results.per_degradation(model, prompt, name) for name in results.degradation_names
                },
                "average_precision": {
                    "clear": results.average_precision(model, prompt, [CLEAN_CONDITION]),
                    "degrade": results.average_precision(model, prompt, degraded),
                },
            }
            if len(results.severities) > 1:
                entry["per_severity"] = {
                    str(level): results.degrade(model, prompt, level) for level in results.severities
                }
            summary[model][prompt] = entry
    gates = [
        {
            "model": model,
            "layer": layer,
            "degradation": degradation,
            "severity": severity,
            "rows_per_image": sums.rows_per_image,
            "images": sums.images,
            "mean_active_rank": sums.active_rank / sums.images,
            "high_fraction": sums.high_fraction / sums.images,
        }
        for (model, degradation, severity, layer), sums in results.gates.items()
        if sums.images
    ]
    return {
        "format_version": FORMAT_VERSION,
        "config": results.config,
        "models": results.models,
        "versions": results.versions,
        "num_images": results.num_images,
        "wall_time_s": results.wall_time_s,
        "conditions": [{"degradation": c.degradation, "severity": c.severity} for c in results.conditions],
        "results": results.rows(),
        "summary": summary,
        "gates": gates,
        "problems": results.problems,
    }


def _with_count(means: dict[str, float] | None, count: int) -> dict[str, Any] | None:
    return None if means is None else {**means, "count": count}


def results_csv(results: Results) -> str:
    return _csv(CSV_COLUMNS, results.rows())


def objects_csv(results: Results) -> str:
    """Per-object scores (image, object, condition, prompt, every metric): paired statistics, oracles."""
    return _csv(OBJECT_COLUMNS, results.object_rows())


def read_objects_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of an objects.csv that `garasam eval` wrote; anything else is refused by name."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            header = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"{path}: cannot read it as an objects.csv ({err})") from None
    missing = [
        c
        for c in ("model", "image_id", "object", "degradation", "severity", "prompt", "iou")
        if c not in header
    ]
    if missing:
        raise DataError(
            f"{path}: not an objects.csv of garasam eval (no column {', '.join(missing)}); "
            "pass the objects.csv an evaluation folder holds"
        )
    return rows


def _csv(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return buffer.getvalue()


def _pct(means: dict[str, float] | None, metric: str) -> str:
    return "n/a" if means is None else f"{100.0 * means[metric]:.1f}"


def _ap(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.1f}"


def headline_table(results: Results) -> list[str]:
    """The paper's layout: rows = models; columns = prompt x degraded / clear x IoU / Dice (in %)."""
    header = ["model"]
    for prompt in results.prompts:
        header += [f"{prompt} degr IoU", f"{prompt} degr Dice", f"{prompt} clear IoU", f"{prompt} clear Dice"]
    rows = []
    for model in results.model_names:
        row = [model]
        for prompt in results.prompts:
            degr, clear = results.degrade(model, prompt), results.clear(model, prompt)
            row += [_pct(degr, "iou"), _pct(degr, "dice"), _pct(clear, "iou"), _pct(clear, "dice")]
        rows.append(row)
    return table(header, rows)


def summary_markdown(results: Results) -> str:
    """The report a person reads first: headline table, all metrics, per degradation and severity."""
    config = results.config
    degraded = results.degraded_conditions
    severities = results.severities
    lines = [
        f"# Robustness evaluation: {config['dataset']}",
        "",
        f"{results.num_images} images"
        + (f" ({len(results.problems)} item(s) skipped, listed at the end)" if results.problems else "")
        + ", "
        + (
            f"suite `{config['suite']}` ({len(results.degradation_names)} degradations"
            + (f", severities {', '.join(map(str, severities))}" if len(severities) > 1 else "")
            + f"), degradations {'read from disk' if config['source'] == 'disk' else 'applied on the fly'}, "
            if results.degradation_names
            else "no degradation added (the images scored as they are: Clear only, Degrade n/a), "
        )
        + f"seed {config['seed']}, {config['device']} {config['precision']}, "
        f"{config['world_size']} process(es), wall time {results.wall_time_s:.1f} s.",
        "Values are per-object means in %; Degrade = mean over the degradations"
        + (" and severities" if len(severities) > 1 else "")
        + "; Clear = undegraded.",
        "",
    ]
    random = [
        m for m, identity in results.models.items() if not (identity.get("backbone") or {}).get("checkpoint")
    ]
    if random:
        lines += [
            f"**Random weights:** {', '.join(random)} had no SAM checkpoint (randomly initialised); their "
            "numbers say nothing about SAM.",
            "",
        ]
    for model, identity in results.models.items():
        seen = identity.get("training_overlap")
        if seen:
            lines += [
                f"**Training images:** {model} was trained on {seen['images']} of the {seen['of']} evaluated "
                "images; its scores on them are not held-out results.",
                "",
            ]
    lines += ["## Headline (paper layout)", ""]
    lines += headline_table(results)
    if config.get("paper"):
        from garasam.eval.paper import paper_comparison

        def ours(model: str, prompt: str, split: str) -> str:
            if prompt not in results.prompts:
                return "-"
            return _pct((results.degrade if split == "degr" else results.clear)(model, prompt), "iou")

        lines += ["", *paper_comparison(config["paper"], results.models, ours)]

    lines += ["", "## All metrics", ""]
    header = ["model", "prompt", "split", *(METRIC_LABELS[m] for m in METRICS), "objects"]
    rows = []
    for model in results.model_names:
        for prompt in results.prompts:
            for split, means, conditions in (
                ("Degrade", results.degrade(model, prompt), degraded),
                ("Clear", results.clear(model, prompt), [CLEAN_CONDITION]),
            ):
                count = results.count(model, prompt, conditions)
                rows.append([model, prompt, split, *(_pct(means, m) for m in METRICS), str(count)])
    lines += table(header, rows, text_columns=3)

    columns = [(model, prompt) for model in results.model_names for prompt in results.prompts]
    lines += ["", "## IoU per degradation", ""]
    header = ["degradation", *(f"{model} {prompt}" for model, prompt in columns)]
    rows = [["clean", *(_pct(results.clear(m, p), "iou") for m, p in columns)]]
    for condition in degraded:
        rows.append(
            [
                results.condition_label(condition),
                *(_pct(results.condition_mean(m, p, condition), "iou") for m, p in columns),
            ]
        )
    rows.append(["**Degrade**", *(f"**{_pct(results.degrade(m, p), 'iou')}**" for m, p in columns)])
    lines += table(header, rows)

    lines += [
        "",
        "## Average precision",
        "",
        "Mask AP@[.50:.95] in %, each object's mask ranked by SAM's predicted IoU (the metric the paper "
        "reports for ISIC, Table a2; docs/eval.md).",
        "",
    ]
    header = ["model", *(f"{prompt} {split} AP" for prompt in results.prompts for split in ("degr", "clear"))]
    rows = [
        [
            model,
            *(
                _ap(results.average_precision(model, prompt, conditions))
                for prompt in results.prompts
                for conditions in (degraded, [CLEAN_CONDITION])
            ),
        ]
        for model in results.model_names
    ]
    lines += table(header, rows)

    if len(severities) > 1:
        lines += ["", "## Degrade IoU per severity", ""]
        header = ["severity", *(f"{model} {prompt}" for model, prompt in columns)]
        rows = [["0 (clean)", *(_pct(results.clear(m, p), "iou") for m, p in columns)]]
        rows += [[str(s), *(_pct(results.degrade(m, p, s), "iou") for m, p in columns)] for s in severities]
        lines += table(header, rows)

    lines += ["", "## Models", ""]
    rows = []
    for model, identity in results.models.items():
        adapter = identity.get("adapter")
        kind = "none (frozen SAM)" if adapter is None else adapter["adapter_type"]
        backbone = identity.get("backbone") or {}
        weights = "" if backbone.get("checkpoint") else " (random weights)"
        rows.append(
            [
                model,
                kind,
                f"{backbone.get('model_type')}{weights}",
                f"{identity.get('adapter_parameters', 0):,}",
                str(identity.get("adapters_dir") or "-"),
            ]
        )
    lines += table(
        ["model", "adapter", "backbone", "adapter params", "adapters folder"], rows, text_columns=3
    )
    if results.problems:
        shown = results.problems[:MAX_LISTED_PROBLEMS]
        lines += ["", f"## Skipped: {len(results.problems)} item(s) (not in any number above)", ""]
        lines += [f"- {problem}" for problem in shown]
        if len(results.problems) > len(shown):
            lines.append(f"- ... and {len(results.problems) - len(shown)} more (all in results.json)")
    return "\n".join(lines) + "\n"


# What write_report writes: a last run's files of these names are replaced or removed, never kept.
_REPORT_FILES = re.compile(
    r"results\.json|results\.csv|objects\.csv|summary\.md|iou_per_degradation\.png|"
    r"iou_delta_per_degradation\.png|iou_vs_severity(_per_degradation)?\.png|gates_.+\.png|qualitative_.+\.png"
)


def _previous_report(out: Path) -> list[Path]:
    return [path for path in out.iterdir() if path.is_file() and _REPORT_FILES.fullmatch(path.name)]


def write_report(results: Results, out: str | os.PathLike) -> list[Path]:
    """Write results.json, results.csv, summary.md, the plots and the qualitative sheets into `out`."""
    from garasam.eval.plots import write_plots
    from garasam.eval.qualitative import write_qualitative

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stale in _previous_report(out):  # a last run's plot this run does not draw must not stay
        stale.unlink()
    text = json.dumps(results_dict(results), indent=2, allow_nan=False)
    atomic_write_text(out / "results.json", text + "\n")
    atomic_write_text(out / "results.csv", results_csv(results))
    atomic_write_text(out / "objects.csv", objects_csv(results))
    atomic_write_text(out / "summary.md", summary_markdown(results))
    written = [out / "results.json", out / "results.csv", out / "objects.csv", out / "summary.md"]
    written += write_plots(results, out)
    written += write_qualitative(results, out)
    return written
