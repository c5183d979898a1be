"""Evaluation plots (matplotlib's object API on the Agg canvas: no pyplot, no global backend change).

- `iou_per_degradation.png`: grouped bars, one group per degradation, one bar per model, per prompt.
- `iou_vs_severity.png` and `iou_vs_severity_per_degradation.png` (runs with several severities,
  i.e. the imagenet-c suite): mean IoU against severity, overall and per degradation.
- `gates_<model>.png` for models with gates (GaRA, MoE-LoRA): heatmaps of the mean active rank and
  of the fraction of windows choosing the high space, per encoder block and degradation (the
  paper's appendix analysis).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from garasam.eval.conditions import CLEAN_CONDITION, Condition
from garasam.eval.results import Results
from garasam.io import atomic_path

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_PROMPT_STYLES = {"point": "-", "box": "--"}
_LAYER = re.compile(r"layers\.(\d+)\.(.+)$|blocks\.(\d+)\.(.+)$")


def model_colour(index: int) -> str:
    return _COLOURS[index % len(_COLOURS)]


def save_figure(fig: Figure, path: Path, dpi: int = 130) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def _iou_pct(means: dict[str, float] | None) -> float:
    return math.nan if means is None else 100.0 * means["iou"]


def plot_per_degradation(results: Results, path: Path) -> Path:
    """Grouped bars of IoU per degradation (clean first), one bar per model, one panel per prompt."""
    names = ["clean", *results.degradation_names]
    models = results.model_names
    width = 0.8 / len(models)
    fig = Figure(figsize=(max(7.0, 0.35 * len(names) * (len(models) + 1) + 1.5), 3.8 * len(results.prompts)))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(len(results.prompts), 1, squeeze=False)[:, 0]
    severities = results.severities
    suffix = f" (mean over severities {', '.join(map(str, severities))})" if len(severities) > 1 else ""
    for ax, prompt in zip(axes, results.prompts, strict=True):
        for k, model in enumerate(models):
            values = [_iou_pct(results.clear(model, prompt))] + [
                _iou_pct(results.per_degradation(model, prompt, name)) for name in results.degradation_names
            ]
            x = np.arange(len(names)) + (k - (len(models) - 1) / 2) * width
            ax.bar(x, values, width, color=model_colour(k), label=model)
            degrade = _iou_pct(results.degrade(model, prompt))
            ax.axhline(degrade, color=model_colour(k), linestyle=":", linewidth=1.2)
        ax.set_xticks(np.arange(len(names)), names, rotation=40, ha="right")
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_ylim(0, 100)
        ax.set_xlabel("degradation")
        ax.set_ylabel("IoU (%)")
        ax.set_title(f"{prompt} prompt: mean IoU per object{suffix}; dotted = Degrade mean")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(title="model", fontsize="small", loc="upper right")
    fig.suptitle(f"IoU per degradation on {results.config['dataset']} ({results.config['suite']} suite)")
    return save_figure(fig, path)


def reference_model(results: Results) -> str | None:
    """The model the others are compared with: the first one without adapters (the frozen SAM)."""
    return next((m for m in results.model_names if not results.models[m].get("adapter")), None)


def plot_delta_per_degradation(results: Results, reference: str, path: Path) -> Path:
    """Bars of each model's IoU minus the reference's per degradation (clean first): differences of
    a point or two vanish between side-by-side bars of 60-80%."""
    names = ["clean", *results.degradation_names]
    others = [m for m in results.model_names if m != reference]
    width = 0.8 / len(others)
    fig = Figure(figsize=(max(7.0, 0.35 * len(names) * (len(others) + 1) + 1.5), 3.6 * len(results.prompts)))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(len(results.prompts), 1, squeeze=False)[:, 0]
    for ax, prompt in zip(axes, results.prompts, strict=True):

        def iou(model: str, name: str, prompt: str = prompt) -> float:
            means = (
                results.clear(model, prompt)
                if name == "clean"
                else results.per_degradation(model, prompt, name)
            )
            return _iou_pct(means)

        for k, model in enumerate(others):
            deltas = [iou(model, name) - iou(reference, name) for name in names]
            x = np.arange(len(names)) + (k - (len(others) - 1) / 2) * width
            ax.bar(x, deltas, width, color=model_colour(results.model_names.index(model)), label=model)
            degrade = _iou_pct(results.degrade(model, prompt)) - _iou_pct(results.degrade(reference, prompt))
            ax.axhline(
                degrade, color=model_colour(results.model_names.index(model)), linestyle=":", linewidth=1.2
            )
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(np.arange(len(names)), names, rotation=40, ha="right")
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_xlabel("degradation")
        ax.set_ylabel(f"IoU - {reference} (points)")
        ax.set_title(f"{prompt} prompt: gain over {reference} per degradation; dotted = on the Degrade mean")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(title="model", fontsize="small", loc="best")
    fig.suptitle(
        f"IoU difference from {reference} on {results.config['dataset']} ({results.config['suite']} suite)"
    )
    return save_figure(fig, path)


def _severity_axes(ax: Axes, results: Results, conditions_at: dict[int, list[Condition]]) -> None:
    """Lines of IoU against severity (0 = clean): colour = model, line style = prompt."""
    levels = [0, *results.severities]
    for k, model in enumerate(results.model_names):
        for prompt in results.prompts:
            values = [_iou_pct(results.clear(model, prompt))] + [
                _iou_pct(results.mean_over(model, prompt, conditions_at[level]))
                for level in results.severities
            ]
            ax.plot(
                levels,
                values,
                _PROMPT_STYLES.get(prompt, "-"),
                marker="o",
                markersize=3.5,
                color=model_colour(k),
                label=f"{model}, {prompt}",
            )
    ax.set_xticks(levels)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)


def plot_severity(results: Results, path: Path) -> Path:
    """Degrade IoU (mean over degradations) against severity, one line per model and prompt."""
    fig = Figure(figsize=(6.5, 4.2))
    fig.set_layout_engine("constrained")
    ax = fig.subplots()
    conditions_at = {
        s: [c for c in results.degraded_conditions if c.severity == s] for s in results.severities
    }
    _severity_axes(ax, results, conditions_at)
    ax.set_xlabel("severity (0 = clean)")
    ax.set_ylabel("IoU (%), mean over degradations")
    ax.set_title(f"Robustness vs severity on {results.config['dataset']}")
    ax.legend(title="model, prompt", fontsize="small")
    return save_figure(fig, path)


def plot_severity_per_degradation(results: Results, path: Path) -> Path:
    """One small panel per degradation: IoU against severity, one line per model and prompt."""
    names = results.degradation_names
    cols = min(5, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(3.0 * cols, 2.5 * rows + 0.8))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    for index, ax in enumerate(axes.flat):
        if index >= len(names):
            ax.set_visible(False)
            continue
        name = names[index]
        conditions_at = {
            s: [c for c in results.degraded_conditions if c.degradation == name and c.severity == s]
            for s in results.severities
        }
        _severity_axes(ax, results, conditions_at)
        ax.set_title(name, fontsize="medium")
        if index % cols == 0:
            ax.set_ylabel("IoU (%)")
        if index + cols >= len(names):  # no panel below: label the x axis here
            ax.set_xlabel("severity (0 = clean)")
            ax.tick_params(labelbottom=True)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, title="model, prompt", loc="outside lower center", ncols=min(4, len(labels)))
    fig.suptitle(f"IoU vs severity per degradation on {results.config['dataset']}")
    return save_figure(fig, path)


def layer_label(name: str, rows_per_image: int, several_per_block: bool) -> str:
    """'block 3' (plus the adapted Linear when a block has several), marked global or windowed."""
    match = _LAYER.search(name)
    if match is None:
        label = name
    else:
        block, module = (
            (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
        )
        label = f"block {block}" + (f" {module}" if several_per_block else "")
    scope = "global" if rows_per_image == 1 else f"{rows_per_image} windows"
    return f"{label} ({scope})"


def gate_matrices(results: Results, model: str) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Row labels, column names, mean active rank and high-space fraction [layers, clean + degradations].

    Each degradation's value is the mean over its evaluated severities of the per-image means.
    """
    layers = results.gate_layers(model)
    columns = ["clean", *results.degradation_names]
    groups = [[CLEAN_CONDITION]] + [
        [c for c in results.degraded_conditions if c.degradation == name]
        for name in results.degradation_names
    ]
    active = np.full((len(layers), len(columns)), np.nan)
    high = np.full_like(active, np.nan)
    for i, layer in enumerate(layers):
        for j, group in enumerate(groups):
            values = [v for c in group if (v := results.gate_mean(model, layer, c)) is not None]
            if values:
                active[i, j] = float(np.mean([v[0] for v in values]))
                high[i, j] = float(np.mean([v[1] for v in values]))
    blocks = [_LAYER.search(layer) for layer in layers]
    block_ids = [m.group(1) or m.group(3) if m else layer for m, layer in zip(blocks, layers, strict=True)]
    several = len(set(block_ids)) < len(block_ids)
    rows = [layer_label(layer, results.gate_rows_per_image(model, layer), several) for layer in layers]
    return rows, columns, active, high


def _heatmap(
    fig: Figure, ax: Axes, data: np.ndarray, rows: Sequence[str], columns: Sequence[str], label: str, **style
) -> None:
    image = ax.imshow(np.ma.masked_invalid(data), aspect="auto", interpolation="nearest", **style)
    ax.set_xticks(np.arange(len(columns)), columns, rotation=45, ha="right")
    ax.set_yticks(np.arange(len(rows)), rows)
    ax.set_xlabel("degradation")
    ax.set_ylabel("encoder block (adapter)")
    colourbar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    colourbar.set_label(label)
    if data.size <= 600:
        low, high = np.nanmin(data), np.nanmax(data)
        middle = (low + high) / 2
        for (i, j), value in np.ndenumerate(data):
            if not np.isnan(value):
                text = f"{value:.2f}" if high <= 1.0 else f"{value:.0f}"
                colour = "white" if value < middle else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=6.5, color=colour)


def plot_gates(results: Results, model: str, path: Path) -> Path:
    """Heatmaps of the gates of `model`: mean active rank, and fraction of windows in the high space."""
    rows, columns, active, high = gate_matrices(results, model)
    adapter = (results.models[model].get("adapter") or {}).get("adapter_type", "")
    high_label = (
        "fraction of windows choosing\nan expert other than the first"
        if adapter == "moe_lora"
        else "fraction of windows choosing\nthe high space"
    )
    fig = Figure(figsize=(max(7.0, 0.62 * len(columns) + 4.0), 2 * (0.36 * len(rows) + 2.2) + 0.5))
    fig.set_layout_engine("constrained")
    top, bottom = fig.subplots(2, 1)
    _heatmap(fig, top, active, rows, columns, "mean active rank\n(components)", cmap="viridis")
    top.set_title("Mean active rank per block")
    _heatmap(fig, bottom, high, rows, columns, high_label, cmap="magma", vmin=0.0, vmax=1.0)
    bottom.set_title("High-space selection per block")
    fig.suptitle(
        f"Gate statistics of {model} ({adapter}) on {results.config['dataset']}: mean over images"
        + (", then over severities" if len(results.severities) > 1 else "")
    )
    return save_figure(fig, path)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_plots(results: Results, out: Path) -> list[Path]:
    """Every plot that applies to `results`; returns the files written."""
    written = [plot_per_degradation(results, out / "iou_per_degradation.png")]
    reference = reference_model(results)
    if reference is not None and len(results.model_names) > 1:
        written.append(plot_delta_per_degradation(results, reference, out / "iou_delta_per_degradation.png"))
    if len(results.severities) > 1:
        written.append(plot_severity(results, out / "iou_vs_severity.png"))
        written.append(plot_severity_per_degradation(results, out / "iou_vs_severity_per_degradation.png"))
    for model in results.model_names:
        if results.gate_layers(model):
            written.append(plot_gates(results, model, out / f"gates_{_safe(model)}.png"))
    return written
