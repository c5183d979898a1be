"""`garasam oracle`: Oracle-Corrupt and Oracle-Instance from per-object scores (the paper's Fig. 2b).

The paper motivates GaRA with two oracles over fixed-rank LoRAs: picking the best rank per
degradation (Oracle-Corrupt) already beats every single rank, and picking it per image instance
(Oracle-Instance) beats that again, so the right rank depends on the input. Both need only the
per-object scores `garasam eval` writes (objects.csv), of several models on identical inputs:

- each model: Degrade = mean over the degradations of the per-degradation mean IoU; Clear = clean;
- Oracle-Corrupt: for each degradation (and clean) the model with the best mean IoU on it;
- Oracle-Instance: for each object under each degradation (and clean) the best model's IoU.

Only objects that every compared model scored count (the same image, object, degradation, severity
and prompt); the report says how many were left out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from garasam.errors import ConfigError, DataError
from garasam.eval.markdown import table
from garasam.eval.report import read_objects_csv

CLEAN = "clean"
ORACLE_CORRUPT, ORACLE_INSTANCE = "Oracle-Corrupt", "Oracle-Instance"

Condition = tuple[str, int]  # (degradation, severity)
ObjectKey = tuple[str, str, str, int]  # (image_id, object, degradation, severity)


def load_scores(paths: Sequence[Path]) -> dict[str, dict[str, dict[ObjectKey, float]]]:
    """prompt -> model -> object key -> IoU, from one or more objects.csv files."""
    scores: dict[str, dict[str, dict[ObjectKey, float]]] = defaultdict(lambda: defaultdict(dict))
    source: dict[str, Path] = {}
    for path in paths:
        rows = read_objects_csv(path)
        for model in {row["model"] for row in rows}:
            if model in source:
                raise DataError(
                    f"model {model!r} is in both {source[model]} and {path}; give each evaluation's models "
                    "distinct names (garasam eval --model NAME=...)"
                )
            source[model] = path
        for number, row in enumerate(rows, start=2):
            try:
                key = (row["image_id"], row["object"], row["degradation"], int(row["severity"]))
                iou = float(row["iou"])
            except (TypeError, ValueError):
                raise DataError(f"{path}, line {number}: unreadable severity or IoU in {row}") from None
            if not 0.0 <= iou <= 1.0:
                raise DataError(f"{path}, line {number}: IoU {row['iou']} outside [0, 1]")
            scores[row["prompt"]][row["model"]][key] = iou
    return scores


def oracle_summary(
    scores: dict[str, dict[str, dict[ObjectKey, float]]], models: Sequence[str] | None = None
) -> dict[str, Any]:
    """Each model's and both oracles' Degrade / Clear IoU per prompt, with what the oracles chose."""
    found = list(dict.fromkeys(m for by_model in scores.values() for m in by_model))
    chosen = list(models) if models else found
    unknown = [m for m in chosen if m not in found]
    if unknown:
        raise ConfigError(f"--model: {', '.join(unknown)} not in the files (they hold {', '.join(found)})")
    if len(chosen) < 2:
        raise ConfigError(f"an oracle chooses among models: need two or more, got {chosen}")
    out: dict[str, Any] = {"models": chosen, "prompts": {}}
    for prompt, by_model in scores.items():
        if not all(m in by_model for m in chosen):
            continue
        shared = set.intersection(*(set(by_model[m]) for m in chosen))
        if not shared:
            raise DataError(
                f"prompt {prompt}: the models share no scored object; compare evaluations of the same images"
            )
        keys = sorted(shared)
        table = np.array([[by_model[m][k] for k in keys] for m in chosen])  # [models, objects]
        conditions = sorted({(k[2], k[3]) for k in keys}, key=lambda c: (c[0] != CLEAN, c))
        columns = {c: [i for i, k in enumerate(keys) if (k[2], k[3]) == c] for c in conditions}
        per_condition = {c: table[:, idx].mean(1) for c, idx in columns.items()}  # [models] each
        instance = {c: table[:, idx].max(0).mean() for c, idx in columns.items()}
        rows = {m: _split({c: per_condition[c][i] for c in conditions}) for i, m in enumerate(chosen)}
        rows[ORACLE_CORRUPT] = _split({c: per_condition[c].max() for c in conditions})
        rows[ORACLE_INSTANCE] = _split(instance)
        winners = table.argmax(0)  # the first best model on ties
        out["prompts"][prompt] = {
            "objects": len(keys),
            "left_out": sum(len(by_model[m]) for m in chosen) - len(chosen) * len(keys),
            "iou": rows,
            "corrupt_choice": {_label(c): chosen[int(per_condition[c].argmax())] for c in conditions},
            "instance_share": {
                m: float(np.mean([np.mean(winners[idx] == i) for idx in columns.values()]))
                for i, m in enumerate(chosen)
            },
        }
    if not out["prompts"]:
        raise DataError(f"no prompt kind was scored for every one of {', '.join(chosen)}")
    return out


def _split(values: dict[Condition, float]) -> dict[str, float | None]:
    """Degrade (mean over the degraded conditions) and Clear of per-condition values."""
    degraded = [v for c, v in values.items() if c[0] != CLEAN]
    clean = [v for c, v in values.items() if c[0] == CLEAN]
    return {
        "degrade": float(np.mean(degraded)) if degraded else None,
        "clear": float(clean[0]) if clean else None,
    }


def _label(condition: Condition) -> str:
    name, severity = condition
    return name if severity in (0, 1) or name == CLEAN else f"{name} severity {severity}"


def oracle_markdown(summary: dict[str, Any]) -> str:
    lines = [
        "# Oracles over " + ", ".join(summary["models"]),
        "",
        "IoU in %, per-object means; Degrade = mean over the degradations. Oracle-Corrupt picks the best "
        "model per degradation, Oracle-Instance per object and degradation (the paper's Fig. 2b).",
        "",
    ]
    for prompt, part in summary["prompts"].items():
        lines += [f"## {prompt} prompts ({part['objects']} objects per model and condition in common)", ""]
        if part["left_out"]:
            lines += [f"{part['left_out']} scores of objects not scored by every model were left out.", ""]
        rows = [
            [name, _pct(values["degrade"]), _pct(values["clear"])] for name, values in part["iou"].items()
        ]
        lines += table(["model", "Degrade IoU", "Clear IoU"], rows)
        lines += [
            "",
            "Oracle-Corrupt's choice per condition; share of objects each model wins (Oracle-Instance):",
            "",
        ]
        lines += table(["condition", "model"], [[c, m] for c, m in part["corrupt_choice"].items()])
        lines += [""]
        lines += table(
            ["model", "objects won"], [[m, f"{100 * v:.0f}%"] for m, v in part["instance_share"].items()]
        )
        lines.append("")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.1f}"
