"""Drawing masks and prompts over an image (CLI overlays and the web page's panels)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from garasam.predict.prompts import UserPrompt

POSITIVE = (40, 200, 60)
NEGATIVE = (230, 40, 40)
BOX = (255, 200, 0)
# Distinct, colour-blind-friendly mask colours (Okabe-Ito), cycled for many masks.
PALETTE = (
    (0, 114, 178),
    (230, 159, 0),
    (0, 158, 115),
    (204, 121, 167),
    (86, 180, 233),
    (213, 94, 0),
    (240, 228, 66),
)


def overlay(
    image: np.ndarray,
    masks: Sequence[np.ndarray] = (),
    prompts: Sequence[UserPrompt] = (),
    alpha: float = 0.5,
    pending_corner: tuple[float, float] | None = None,
) -> np.ndarray:
    """A copy of the RGB image with each mask tinted and outlined, and the prompts drawn on top.

    `pending_corner` marks the first click of a box that is still being drawn.
    """
    out = np.array(image, dtype=np.uint8, copy=True)
    thickness = max(1, round(max(out.shape[:2]) / 300))
    for index, mask in enumerate(masks):
        mask = np.asarray(mask, dtype=bool)
        color = np.array(PALETTE[index % len(PALETTE)], dtype=np.float32)
        out[mask] = (out[mask] * (1 - alpha) + color * alpha).round().astype(np.uint8)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, tuple(int(c) for c in color), thickness)
    radius = 2 * thickness + 2
    for prompt in prompts:
        if prompt.box is not None:
            x0, y0, x1, y1 = (round(v) for v in prompt.box)
            cv2.rectangle(out, (x0, y0), (x1, y1), BOX, thickness)
        for (x, y), label in zip(prompt.points, prompt.labels, strict=True):
            center = (round(x), round(y))
            cv2.circle(out, center, radius, POSITIVE if label == 1 else NEGATIVE, -1)
            cv2.circle(out, center, radius, (255, 255, 255), max(1, thickness // 2))
    if pending_corner is not None:
        x, y = (round(v) for v in pending_corner)
        cv2.drawMarker(out, (x, y), BOX, cv2.MARKER_CROSS, 4 * radius, thickness)
    return out
