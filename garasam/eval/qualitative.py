"""Qualitative sheets: what each model segments on a few images under a few degradations.

One PNG per prompt kind (`qualitative_<prompt>.png`). Rows are (image, degradation) pairs kept by
`evaluate(..., examples=N)`; columns are the clean input, the degraded input with the prompts drawn,
the ground truth, then each model's masks with its mean IoU over the image's objects. Each object has
one colour in the ground truth and in every prediction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from garasam.data.prompts import Prompt
from garasam.eval.conditions import Condition
from garasam.eval.plots import save_figure
from garasam.eval.results import Example, Results

_OBJECT_COLOURS = np.array(
    [
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (210, 245, 60),
        (250, 190, 212),
    ],
    dtype=np.float64,
)


def object_colour(index: int) -> np.ndarray:
    return _OBJECT_COLOURS[index % len(_OBJECT_COLOURS)]


def overlay(image: np.ndarray, masks: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """The image in dimmed grey with each mask painted in its object colour (later objects on top).

    A grey background keeps the blended colours true to the object colours of the prompts.
    """
    grey = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    canvas = np.repeat(grey[..., None], 3, axis=2) * 0.6
    for index, mask in enumerate(masks):
        canvas[mask] = (1 - alpha) * canvas[mask] + alpha * object_colour(index)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def draw_prompts(ax: Axes, prompts: Sequence[Prompt]) -> None:
    """Stars for point prompts, rectangles for boxes, in the object colours."""
    for index, prompt in enumerate(prompts):
        colour = object_colour(index) / 255.0
        if prompt.box is not None:
            x0, y0, x1, y1 = (float(v) for v in prompt.box)
            ax.add_patch(
                Rectangle(
                    (x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, edgecolor=colour, lw=1.5
                )
            )
        else:
            for (x, y), label in zip(prompt.points, prompt.labels, strict=True):
                ax.plot(
                    x,
                    y,
                    marker="*" if label == 1 else "X",
                    markersize=11,
                    markerfacecolor=colour,
                    markeredgecolor="white",
                    markeredgewidth=0.8,
                )


def _show(ax: Axes, image: np.ndarray, title: str) -> None:
    ax.imshow(image, interpolation="nearest")
    ax.set_title(title, fontsize="small")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_sheet(
    examples: Sequence[Example],
    models: Sequence[str],
    path: Path,
    title: str,
    condition_label: Callable[[Condition], str] = lambda condition: condition.label,
) -> Path:
    """A grid: one row per example, columns clean / degraded + prompts / ground truth / each model."""
    columns = 3 + len(models)
    height, width = examples[0].clean.shape[:2]
    cell = 2.6
    fig = Figure(figsize=(cell * columns, cell * len(examples) * height / width + 0.9))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(len(examples), columns, squeeze=False)
    for row, example in zip(axes, examples, strict=True):
        label = condition_label(example.condition)
        _show(row[0], example.clean, f"{example.image_id}: clean input")
        _show(row[1], example.degraded, f"{label} + {example.prompt} prompt")
        draw_prompts(row[1], example.prompts)
        _show(row[2], overlay(example.degraded, example.gt), f"ground truth ({len(example.gt)} objects)")
        for ax, model in zip(row[3:], models, strict=True):
            _show(
                ax,
                overlay(example.degraded, example.predictions[model]),
                f"{model}: IoU {100 * example.iou[model]:.1f}%",
            )
            draw_prompts(ax, example.prompts)
    fig.suptitle(title)
    return save_figure(fig, path, dpi=110)


def write_qualitative(results: Results, out: Path) -> list[Path]:
    """One sheet per prompt kind from the examples `evaluate` kept; nothing when it kept none."""
    written = []
    for prompt in results.prompts:
        examples = [e for e in results.examples if e.prompt == prompt]
        if not examples:
            continue
        marker = "stars" if prompt == "point" else "rectangles"
        title = (
            f"{prompt} prompts ({marker}) on {results.config['dataset']}: colours = objects "
            "(same in ground truth and predictions); IoU = mean over the image's objects"
        )
        path = out / f"qualitative_{prompt}.png"
        written.append(plot_sheet(examples, results.model_names, path, title, results.condition_label))
    return written
