"""Synthetic video clips: the objects of a scene family moving over a slowly panning photograph.

Each object is drawn once (a shape and a texture of its family, `garasam.data.synthetic`) and then
moves along a smooth path, turns, grows and shrinks from frame to frame; some paths carry their
object out of the picture and back in. Objects keep one depth order per clip, so a later object
hides an earlier one where they cross. Masks are exact per frame: an object's visible pixels after
occlusion, empty while it is out of the picture or hidden. Every object is visible on frame 0 (the
frame a tracker is prompted on), so ids are 1..N in depth order.

Deterministic per (seed, family, split); used by the video tests, `garasam synth --video` and the
video miniature study, as the image scenes are.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from garasam.data.images import save_jpeg
from garasam.data.labels import label_map, write_label_png
from garasam.data.synthetic import (
    FAMILIES,
    FAMILY_SPECS,
    Family,
    Split,
    _crop_background,
    _texture,
    family_settings,
)
from garasam.errors import ConfigError
from garasam.io import atomic_write_text

MAX_SPEED = 0.04  # of the picture's side per frame, before the wandering term
PAN = 0.15  # the background window travels at most this share of the picture over a clip
DONE = ".done"  # written last in a clip's folder: the clip is complete


@dataclass
class VideoSample:
    """One clip: frames (H x W x 3 uint8) and per frame a dict object id -> bool mask (every object
    on every frame, empty where it is not visible)."""

    frames: list[np.ndarray]
    masks: list[dict[int, np.ndarray]]
    meta: dict[str, object] = field(default_factory=dict)


def generate_clip(
    seed: int,
    size: tuple[int, int] = (256, 256),
    length: int = 8,
    family: Family = "source",
    split: Split | None = None,
    num_objects: tuple[int, int] | None = None,
) -> VideoSample:
    """One deterministic clip of `family` (and `split`, default its first) of `length` frames."""
    spec, split, (low, high) = family_settings(family, split, num_objects)
    height, width = (int(v) for v in size)
    if height < 32 or width < 32:
        raise ConfigError(f"clip size must be at least 32x32, got {width}x{height}")
    if length < 1:
        raise ConfigError(f"a clip has at least one frame, got length {length}")
    rng = np.random.default_rng([seed, FAMILIES.index(family) + 1, 1 + ("train", "test").index(split), 7])
    pan = (int(PAN * height) + 1, int(PAN * width) + 1)
    background_name, background = _crop_background(rng, spec.backgrounds, height + pan[0], width + pan[1])
    pan_path = rng.uniform(-1, 1, size=2)
    side = min(height, width)
    names = list(spec.shapes)
    objects = [
        _sprite(
            rng,
            spec,
            names[rng.integers(len(names))],
            rng.uniform(*spec.radius) * side,
            height,
            width,
            length,
        )
        for _ in range(rng.integers(low, high + 1))
    ]
    min_area = max(16, int(0.004 * height * width))
    frames, layers = [], []
    for t in range(length):
        offset = [
            int(round((0.5 + 0.5 * pan_path[i] * (t / max(length - 1, 1) - 0.5)) * pan[i])) for i in (0, 1)
        ]
        image = background[offset[0] : offset[0] + height, offset[1] : offset[1] + width].copy()
        shapes = []
        for sprite in objects:
            shape, texture = sprite.at(t, height, width)
            image[shape] = texture[shape]
            shapes.append(shape)
        frames.append(np.clip(np.rint(image), 0, 255).astype(np.uint8))
        layers.append(_visible(shapes))
    keep = [i for i in range(len(objects)) if layers[0][i].sum() >= min_area]  # promptable on frame 0
    masks = [{new_id: layer[old] for new_id, old in enumerate(keep, start=1)} for layer in layers]
    return VideoSample(
        frames=frames,
        masks=masks,
        meta={
            "source": f"synthetic-video:{family}:{split}:{seed}",
            "clip_id": clip_id(seed, family, split),
            "shapes": [objects[i].kind for i in keep],
            "background": background_name,
            "absent_on_some_frames": [
                bool(any(not m[new].any() for m in masks)) for new in range(1, len(keep) + 1)
            ],
        },
    )


def clip_id(seed: int, family: Family = "source", split: Split = "train") -> str:
    return f"{family}_{split}_clip{seed:07d}"


@dataclass
class _Sprite:
    """An object drawn once at the origin of its own canvas, and its path in the picture."""

    kind: str
    mask: np.ndarray  # bool, the sprite canvas
    texture: np.ndarray  # float32 RGB, the sprite canvas
    start: np.ndarray  # (x, y) centre on frame 0
    velocity: np.ndarray  # (x, y) per frame
    wander: np.ndarray  # (amplitude x, amplitude y, frequency, phase)
    spin: float  # degrees per frame
    angle: float
    pulse: tuple[float, float]  # scale amplitude and phase

    def at(self, t: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """The object's mask and texture in the picture at frame t."""
        amp_x, amp_y, frequency, phase = self.wander
        centre = self.start + self.velocity * t + np.array([amp_x, amp_y]) * math.sin(frequency * t + phase)
        scale = 1.0 + self.pulse[0] * math.sin(0.4 * t + self.pulse[1])
        side = self.mask.shape[0]
        matrix = cv2.getRotationMatrix2D((side / 2, side / 2), self.angle + self.spin * t, scale)
        matrix[:, 2] += centre - side / 2
        shape = (
            cv2.warpAffine(self.mask.astype(np.uint8), matrix, (width, height), flags=cv2.INTER_NEAREST) > 0
        )
        texture = cv2.warpAffine(self.texture, matrix, (width, height), flags=cv2.INTER_LINEAR)
        return shape, texture


def _sprite(
    rng: np.random.Generator, spec, kind: str, radius: float, height: int, width: int, length: int
) -> _Sprite:
    side = int(math.ceil(3.2 * radius)) + 2
    mask = spec.shapes[kind](rng, side / 2, side / 2, radius, side, side)
    _, texture = _texture(rng, spec.textures, side, side)
    start = np.array([rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height])
    velocity = rng.uniform(-MAX_SPEED, MAX_SPEED, size=2) * min(height, width)
    # a third of the objects wander far enough to leave the picture for a while and come back
    reach = 0.6 if rng.random() < 1 / 3 else 0.12
    wander = np.array(
        [
            rng.uniform(0.3, 1.0) * reach * width,
            rng.uniform(0.3, 1.0) * reach * height,
            2 * math.pi / max(length, 2) * rng.uniform(0.6, 1.4),
            rng.uniform(0, 2 * math.pi),
        ]
    )
    if reach > 0.5:
        wander[3] = 0.0  # a far wanderer starts at its path's centre, in the picture
    return _Sprite(
        kind=kind,
        mask=mask,
        texture=np.ascontiguousarray(texture, dtype=np.float32),
        start=start,
        velocity=velocity,
        wander=wander,
        spin=float(rng.uniform(-8, 8)),
        angle=float(rng.uniform(0, 360)),
        pulse=(float(rng.uniform(0, 0.2)), float(rng.uniform(0, 2 * math.pi))),
    )


def _visible(shapes: list[np.ndarray]) -> list[np.ndarray]:
    """Each object's pixels not covered by a later (nearer) one."""
    covered = np.zeros_like(shapes[0]) if shapes else None
    visible = [None] * len(shapes)
    for index in range(len(shapes) - 1, -1, -1):
        visible[index] = shapes[index] & ~covered
        covered |= shapes[index]
    return visible


def write_clips(
    out: str | os.PathLike,
    num: int,
    seed: int = 0,
    size: tuple[int, int] = (256, 256),
    length: int = 8,
    family: Family = "target",
    split: Split | None = None,
) -> tuple[int, int]:
    """Write clips `seed .. seed+num-1` in the frames + masks layout (`<clip>/frames/*.jpg`,
    `<clip>/masks/*.png` of object ids); a clip whose `.done` exists is kept. Returns (written, kept)."""
    if num < 1:
        raise ConfigError(f"num must be at least 1, got {num}")
    root = Path(out)
    family_split = FAMILY_SPECS[family].splits[0] if split is None else split
    written = kept = 0
    for clip_seed in tqdm(range(seed, seed + num), desc="synth --video", unit="clip"):
        folder = root / clip_id(clip_seed, family, family_split)
        if (folder / DONE).is_file():
            kept += 1
            continue
        clip = generate_clip(clip_seed, size, length, family, family_split)
        for index, (frame, masks) in enumerate(zip(clip.frames, clip.masks, strict=True)):
            save_jpeg(folder / "frames" / f"{index:05d}.jpg", frame)
            write_label_png(folder / "masks" / f"{index:05d}.png", label_map(masks, frame.shape[:2]))
        atomic_write_text(folder / DONE, json.dumps(clip.meta) + "\n")
        written += 1
    return written, kept
