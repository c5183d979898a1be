"""User prompts of the CLI and the web page: parsing, checking against an image, and segmenting.

A `UserPrompt` is what a person gives for one object: clicks (positive and negative) and/or one box,
in original-image pixels. Checking happens before any model runs or any file is written, so a typo
in a coordinate costs nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from garasam.errors import DataError
from garasam.predict.predictor import GaraSamPredictor


@dataclass(frozen=True)
class UserPrompt:
    """Points (x, y) with labels 1 = foreground / 0 = background, and/or one XYXY box, in pixels."""

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if len(self.points) != len(self.labels):
            raise DataError(f"{self.where}: {len(self.points)} points but {len(self.labels)} labels")
        if not self.points and self.box is None:
            raise DataError(f"{self.where}: a prompt needs at least one point or a box")
        coordinates = [v for point in self.points for v in point] + list(self.box or ())
        if not all(math.isfinite(v) for v in coordinates):
            raise DataError(f"{self.where}: every coordinate must be a finite number, got {coordinates}")
        bad = [label for label in self.labels if label not in (0, 1)]
        if bad:
            raise DataError(
                f"{self.where}: point labels must be 1 (foreground) or 0 (background), got {bad[0]}"
            )
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if not (x1 > x0 and y1 > y0):
                raise DataError(
                    f"{self.where}: box {_fmt(self.box)} has zero area (need x0 < x1 and y0 < y1)"
                )

    @property
    def where(self) -> str:
        return f"prompt {self.name}" if self.name else "prompt"

    def check_inside(self, height: int, width: int, image: str) -> None:
        """Raise DataError unless every point lies on a pixel and the box within the image."""
        for x, y in self.points:
            if not (0 <= x < width and 0 <= y < height):
                raise DataError(
                    f"{image}: {self.where}: point ({_fmt((x, y))}) is outside the {width}x{height} image"
                )
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if min(x0, y0) < 0 or x1 > width or y1 > height:
                raise DataError(
                    f"{image}: {self.where}: box {_fmt(self.box)} is outside the {width}x{height} image"
                )

    def to_json(self) -> dict[str, object]:
        return {
            "points": [list(p) for p in self.points],
            "labels": list(self.labels),
            "box": None if self.box is None else list(self.box),
        }


def segment(predictor: GaraSamPredictor, prompt: UserPrompt) -> tuple[np.ndarray, float]:
    """The mask and predicted IoU for `prompt` on the predictor's current image.

    A single click is ambiguous (part, object, group), so SAM's three candidates are asked for and
    the best-scoring one is kept, as SAM's authors recommend; any other prompt asks for one mask.
    """
    single_click = len(prompt.points) == 1 and prompt.box is None
    masks, scores = _predict(predictor, prompt, multimask=single_click)
    best = int(np.argmax(scores))
    return masks[best], float(scores[best])


def candidates(predictor: GaraSamPredictor, prompt: UserPrompt) -> list[tuple[np.ndarray, float]]:
    """SAM's three candidate masks for `prompt` with their predicted IoU, best first."""
    masks, scores = _predict(predictor, prompt, multimask=True)
    return [(masks[i], float(scores[i])) for i in np.argsort(-scores, kind="stable")]


def _predict(
    predictor: GaraSamPredictor, prompt: UserPrompt, multimask: bool
) -> tuple[np.ndarray, np.ndarray]:
    masks, scores, _ = predictor.predict(
        point_coords=np.asarray(prompt.points, dtype=np.float64) if prompt.points else None,
        point_labels=np.asarray(prompt.labels, dtype=np.int64) if prompt.points else None,
        box=None if prompt.box is None else np.asarray(prompt.box, dtype=np.float64),
        multimask_output=multimask,
    )
    return masks, scores


def _fmt(values: tuple[float, ...]) -> str:
    return ",".join(f"{v:g}" for v in values)
