"""Degrading a video clip coherently in time, with the image degradations of the suites.

A camera in fog sees the same fog in every frame, a dirty lens keeps its dirt, noise is new in every
frame, and rain and snow fall. So each degradation has a behaviour in time (`TEMPORAL`):

- `constant`: the parameters and random fields are drawn once per clip (the same seed for every
  frame): fog, blurs, colour and brightness changes, compression, frost, spatter, pixelation,
  elastic warps (the masks move with the same field in every frame).
- `per_frame`: redrawn in every frame (a seed per frame): the noises.
- `moving`: rain and snow. The streaks are drawn once per clip on a canvas larger than the frame
  (the frame reflected into the margin), and the frame's window slides over it by a velocity drawn
  per clip, so the streaks move across the picture from frame to frame while the scene stays put.

Time-varying intensity (RobustPVOS's, for photometric degradations): a smooth random curve per clip
(`intensity_curve`, a few low-frequency sinusoids) gives each frame a weight in [low, 1], and the
frame is the blend `(1 - w) * clean + w * degraded`. Geometric degradations (elastic) move pixels
and their masks, which a blend cannot; they refuse a curve.

`degrade_clip` is the one function training, evaluation, `garasam corrupt --video` and the web page
use, so a clip is degraded the same way in all of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from garasam.data.degradations.core import Degradation
from garasam.errors import DataError

PER_FRAME = frozenset(
    {"gauss_noise", "ISO_noise", "impulse_noise", "gaussian_noise", "shot_noise", "speckle_noise"}
)
MOVING = frozenset({"rain", "snow"})
MAX_SPEED = 6.0  # pixels per frame, at the most, that rain and snow move (drawn per clip)


def temporal_behaviour(degradation: Degradation) -> str:
    """ "constant", "per_frame" or "moving" (see the module's docstring)."""
    if degradation.name in PER_FRAME:
        return "per_frame"
    if degradation.name in MOVING:
        return "moving"
    return "constant"


def frame_seed(seed: int, frame: int) -> int:
    """The seed of frame `frame` of a clip whose seed is `seed` (the same in every process)."""
    digest = hashlib.sha256(f"{seed}\x00frame\x00{frame}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def intensity_curve(length: int, seed: int, low: float = 0.2, components: int = 3) -> np.ndarray:
    """A smooth random weight per frame in [low, 1]: a sum of `components` sinusoids with at most
    two periods over the clip, random phases and amplitudes, scaled to span [low, 1]."""
    if length < 1:
        raise DataError(f"intensity curve: a clip has at least one frame, got {length}")
    if not 0.0 <= low <= 1.0:
        raise DataError(f"intensity curve: low must be in [0, 1], got {low}")
    rng = np.random.default_rng(frame_seed(seed, -1))
    t = np.linspace(0.0, 1.0, length)
    curve = np.zeros(length)
    for _ in range(components):
        frequency = rng.uniform(0.25, 2.0)
        curve += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * frequency * t + rng.uniform(0, 2 * np.pi))
    span = curve.max() - curve.min()
    normalised = (curve - curve.min()) / span if span > 1e-12 else np.ones(length)
    return low + (1.0 - low) * normalised


def degrade_clip(
    degradation: Degradation,
    frames: Sequence[np.ndarray],
    seed: int,
    severity: int | None = None,
    masks: Sequence[np.ndarray | None] | None = None,
    intensity: Sequence[float] | np.ndarray | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray | None] | None]:
    """Degrade every frame (H x W x 3 uint8, one size) of a clip coherently in time.

    `masks` (per frame a bool [N, H, W] or None) come back warped for geometric degradations.
    `intensity`: a weight per frame in [0, 1] (e.g. `intensity_curve`), or None for full strength.
    """
    if not frames:
        raise DataError(f"degradation {degradation.suite}/{degradation.name}: a clip needs frames")
    shape = frames[0].shape
    for index, frame in enumerate(frames):
        if (
            not isinstance(frame, np.ndarray)
            or frame.dtype != np.uint8
            or frame.ndim != 3
            or frame.shape != shape
        ):
            raise DataError(
                f"degradation {degradation.suite}/{degradation.name}: frame {index} must be uint8 "
                f"{shape[1]}x{shape[0]}x3 like frame 0"
            )
    if masks is not None and len(masks) != len(frames):
        raise DataError(f"{len(masks)} masks for {len(frames)} frames: one entry (or None) per frame")
    weights = _weights(degradation, intensity, len(frames))
    behaviour = temporal_behaviour(degradation)
    velocity = _velocity(seed) if behaviour == "moving" else (0.0, 0.0)
    margin = (
        int(np.ceil(abs(velocity[0]) * (len(frames) - 1))),
        int(np.ceil(abs(velocity[1]) * (len(frames) - 1))),
    )
    out_frames, out_masks = [], [] if masks is not None else None
    for index, frame in enumerate(frames):
        mask = None if masks is None else masks[index]
        if behaviour == "moving":
            degraded = _moving(degradation, frame, seed, severity, velocity, margin, index)
        else:
            this_seed = frame_seed(seed, index) if behaviour == "per_frame" else seed
            degraded, mask = degradation.apply_image(frame, this_seed, severity, mask)
        if weights is not None and weights[index] < 1.0:
            blend = weights[index] * degraded.astype(np.float32) + (1 - weights[index]) * frame.astype(
                np.float32
            )
            degraded = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
        out_frames.append(degraded)
        if out_masks is not None:
            out_masks.append(mask)
    return out_frames, out_masks


def _weights(
    degradation: Degradation, intensity: Sequence[float] | np.ndarray | None, length: int
) -> np.ndarray | None:
    if intensity is None:
        return None
    weights = np.asarray(intensity, dtype=np.float64)
    if (
        weights.shape != (length,)
        or not np.isfinite(weights).all()
        or (weights < 0).any()
        or (weights > 1).any()
    ):
        raise DataError(f"intensity: one weight in [0, 1] per frame ({length}), got {weights.shape} values")
    if degradation.geometric:
        raise DataError(
            f"degradation {degradation.suite}/{degradation.name} moves pixels and masks: it takes no intensity curve"
        )
    return weights


def _velocity(seed: int) -> tuple[float, float]:
    """(down, right) pixels per frame: mostly downwards, a little sideways, per clip."""
    rng = np.random.default_rng(frame_seed(seed, -2))
    return float(rng.uniform(0.5, 1.0) * MAX_SPEED), float(rng.uniform(-0.3, 0.3) * MAX_SPEED)


def _moving(
    degradation: Degradation,
    frame: np.ndarray,
    seed: int,
    severity: int | None,
    velocity: tuple[float, float],
    margin: tuple[int, int],
    index: int,
) -> np.ndarray:
    """The frame's window on a canvas degraded once per clip-sized canvas: the window moves against
    the velocity, so the streaks fixed on the canvas move with it across the frame."""
    height, width = frame.shape[:2]
    canvas = np.pad(frame, ((margin[0], margin[0]), (margin[1], margin[1]), (0, 0)), mode="reflect")
    degraded, _ = degradation.apply_image(canvas, seed, severity)
    top = margin[0] - int(round(velocity[0] * index))
    left = margin[1] - int(round(velocity[1] * index))
    return np.ascontiguousarray(degraded[top : top + height, left : left + width])
