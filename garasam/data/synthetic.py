"""Synthetic segmentation scenes in three families: textured shapes composited onto real photographs.

They let the demo, the miniature study, the tests and `garasam synth` train and evaluate without
downloading a dataset. Masks are exact: each object's mask is its visible region after later objects
occlude it. The three families mirror the paper's data (reference section 3):

- `source`, the SA-1B analogue: only for pretraining the bundled tiny SAM. Convex-ish solid shapes,
  2-5 per scene, simple textures. (This is, bit for bit, the generator the tiny SAM was trained on.)
- `target`, the Robust-Seg analogue that adapters are trained on: other shapes, textures and
  photographs, more and smaller objects, and other mask conventions: holes belong to the background,
  thin handles belong to the object. A `train` split and a seen `test` split (other seeds).
- `zero_shot`, the COCO analogue, test only: yet other photographs, cluttered scenes of many small
  objects, objects nested inside others (each its own mask, carved out of its host) and painted
  decals that belong to the object they sit on.

Backgrounds are the photographs bundled inside the scikit-image wheel (read from its data folder;
images that `skimage.data` fetches with pooch are not used, so nothing is ever downloaded); no
photograph serves two families.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import cv2
import numpy as np
from PIL import Image
from tqdm import tqdm

from garasam.data.images import save_jpeg, save_masks
from garasam.data.readers import CLEAN_DIR, MASKS_DIR, Sample
from garasam.errors import ConfigError, DataError

Family = Literal["source", "target", "zero_shot"]
Split = Literal["train", "test"]
FAMILIES: tuple[Family, ...] = ("source", "target", "zero_shot")
SPLITS: tuple[Split, ...] = ("train", "test")


@functools.cache
def _background(name: str) -> tuple[np.ndarray, bool]:
    """A bundled photograph as RGB, and whether it is grayscale."""
    import skimage.data

    path = Path(skimage.data.__file__).parent / name
    if not path.is_file():
        raise DataError(f"{path}: background image missing from the scikit-image installation")
    with Image.open(path) as img:
        gray = img.mode in ("L", "LA", "I;16")
        return np.asarray(img.convert("RGB")), gray


def _crop_background(
    rng: np.random.Generator, names: tuple[str, ...], height: int, width: int
) -> tuple[str, np.ndarray]:
    name = names[rng.integers(len(names))]
    photo, gray = _background(name)
    ph, pw = photo.shape[:2]
    aspect = width / height
    crop_h = int(min(ph, pw / aspect) * rng.uniform(0.35, 1.0))
    crop_w = max(1, min(pw, int(round(crop_h * aspect))))
    top, left = rng.integers(ph - crop_h + 1), rng.integers(pw - crop_w + 1)
    crop = photo[top : top + crop_h, left : left + crop_w]
    interpolation = cv2.INTER_AREA if crop_h > height else cv2.INTER_LINEAR
    image = cv2.resize(crop, (width, height), interpolation=interpolation).astype(np.float32)
    if rng.random() < 0.5:
        image = image[:, ::-1]
    if gray:  # tint grayscale photographs so colour does not give the objects away
        image = image * rng.uniform(0.55, 1.0, size=3).astype(np.float32)
    return name, image


# -- shapes: each draws a filled bool mask around (cx, cy) with size r ---------------------------------
def _polygon(points: np.ndarray, height: int, width: int) -> np.ndarray:
    canvas = np.zeros((height, width), np.uint8)
    cv2.fillPoly(canvas, [np.round(points * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def _radial(cx: float, cy: float, radii: np.ndarray, angles: np.ndarray, rotation: float) -> np.ndarray:
    return np.stack([cx + radii * np.cos(angles + rotation), cy + radii * np.sin(angles + rotation)], axis=1)


def _ellipse(rng: np.random.Generator, cx: float, cy: float, r: float, h: int, w: int) -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    ratio = rng.uniform(0.35, 1.0)
    points = np.stack([r * np.cos(angles), r * ratio * np.sin(angles)], axis=1)
    theta = rng.uniform(0, np.pi)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return _polygon(points @ rot.T + [cx, cy], h, w)


def _convex_polygon(rng: np.random.Generator, cx: float, cy: float, r: float, h: int, w: int) -> np.ndarray:
    angles = np.sort(rng.uniform(0, 2 * np.pi, size=rng.integers(3, 9)))
    return _polygon(_radial(cx, cy, r * rng.uniform(0.75, 1.0, angles.size), angles, 0.0), h, w)


def _star(rng: np.random.Generator, cx: float, cy: float, r: float, h: int, w: int) -> np.ndarray:
    spikes = int(rng.integers(4, 9))
    angles = np.linspace(0, 2 * np.pi, 2 * spikes, endpoint=False)
    radii = np.where(np.arange(2 * spikes) % 2 == 0, r, r * rng.uniform(0.35, 0.6))
    return _polygon(_radial(cx, cy, radii, angles, rng.uniform(0, np.pi)), h, w)


def _rectangle(rng: np.random.Generator, cx: float, cy: float, r: float, h: int, w: int) -> np.ndarray:
    half = np.array([r, r * rng.uniform(0.3, 1.0)])
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
    theta = rng.uniform(0, np.pi)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return _polygon(corners @ rot.T + [cx, cy], h, w)


def _ring(rng: np.random.Generator, cx: float, cy: float, r: float, h: int, w: int) -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    outer = _polygon(_radial(cx, cy, np.full(72, r), angles, 0.0), h, w)
    inner = _polygon(_radial(cx, cy, np.full(72, r * rng.uniform(0.4, 0.7)), angles, 0.0), h, w)
    return outer & ~inner


def _blob(rng: np.random.Generator, cx: float, cy: float, r: float, h: int, w: int) -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    radii = np.ones_like(angles)
    for k in range(2, 6):
        radii += rng.uniform(0, 0.35 / k * 2) * np.cos(k * angles + rng.uniform(0, 2 * np.pi))
    return _polygon(_radial(cx, cy, r * radii / radii.max(), angles, 0.0), h, w)


def _crescent(rng: np.random.Generator, cx: float, cy: float, r: float, h: int, w: int) -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    disc = _polygon(_radial(cx, cy, np.full(72, r), angles, 0.0), h, w)
    theta, shift = rng.uniform(0, 2 * np.pi), r * rng.uniform(0.35, 0.6)
    bite = _polygon(
        _radial(cx + shift * np.cos(theta), cy + shift * np.sin(theta), np.full(72, r * 0.85), angles, 0.0),
        h,
        w,
    )
    return disc & ~bite


def _cross(rng: np.random.Generator, cx: float, cy: float, r: float, h: int, w: int) -> np.ndarray:
    t = rng.uniform(0.25, 0.45)
    outline = np.array(
        [
            [-t, -1],
            [t, -1],
            [t, -t],
            [1, -t],
            [1, t],
            [t, t],
            [t, 1],
            [-t, 1],
            [-t, t],
            [-1, t],
            [-1, -t],
            [-t, -t],
        ]
    )
    theta = rng.uniform(0, np.pi / 2)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    return _polygon(outline * r @ rot.T + [cx, cy], h, w)


def _disc(cx: float, cy: float, r: float, h: int, w: int) -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    return _polygon(_radial(cx, cy, np.full(72, r), angles, 0.0), h, w)


def _perforated(rng: np.random.Generator, cx: float, cy: float, r: float, h: int, w: int) -> np.ndarray:
    """A blob with 1-3 round holes: the holes are background (target convention)."""
    shape = _blob(rng, cx, cy, r, h, w)
    for _ in range(rng.integers(1, 4)):
        angle, dist = rng.uniform(0, 2 * np.pi), r * rng.uniform(0.0, 0.45)
        hole = _disc(cx + dist * np.cos(angle), cy + dist * np.sin(angle), r * rng.uniform(0.12, 0.25), h, w)
        shape &= ~hole
    return shape


def _handled(rng: np.random.Generator, cx: float, cy: float, r: float, h: int, w: int) -> np.ndarray:
    """An ellipse with a thin straight handle (2-3 px): thin parts belong to the object (target)."""
    body = _ellipse(rng, cx, cy, 0.6 * r, h, w)
    angle, length = rng.uniform(0, 2 * np.pi), r * rng.uniform(1.1, 1.6)
    end = (cx + length * np.cos(angle), cy + length * np.sin(angle))
    canvas = np.zeros((h, w), np.uint8)
    thickness = int(rng.integers(2, 4))
    cv2.line(canvas, (round(cx), round(cy)), (round(end[0]), round(end[1])), 1, thickness)
    return body | canvas.astype(bool)


ShapeFn = Callable[[np.random.Generator, float, float, float, int, int], np.ndarray]


# -- textures: fill an H x W x 3 float patch -------------------------------------------------------------
def _texture(
    rng: np.random.Generator, kinds: tuple[str, ...], height: int, width: int
) -> tuple[str, np.ndarray]:
    kind = kinds[rng.integers(len(kinds))]
    first, second = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    if kind == "flat":
        return kind, np.broadcast_to(first, (height, width, 3))
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    along = xs * np.cos(theta) + ys * np.sin(theta)
    if kind == "gradient":
        t = (along - along.min()) / max(float(np.ptp(along)), 1.0)
    elif kind == "stripes":
        t = (np.sin(along * (2 * np.pi / rng.uniform(5, 18))) > 0).astype(np.float32)
    elif kind == "checker":
        period = rng.uniform(4, 12)
        across = -xs * np.sin(theta) + ys * np.cos(theta)
        t = ((np.floor(along / period) + np.floor(across / period)) % 2).astype(np.float32)
    elif kind == "dots":
        period = rng.uniform(5, 11)
        dx, dy = (xs % period) - period / 2, (ys % period) - period / 2
        t = (dx * dx + dy * dy < (period * rng.uniform(0.2, 0.4)) ** 2).astype(np.float32)
    elif kind == "smooth":  # low-frequency noise: a coarse random grid, upsampled
        grid = rng.uniform(0, 1, size=(4, 4)).astype(np.float32)
        t = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    else:
        t = np.full((height, width), 0.5, np.float32)
    patch = first + t[..., None] * (second - first)
    if kind == "noise":
        patch = patch + rng.normal(0, 28, size=(height, width, 3)).astype(np.float32)
    return kind, patch


@dataclass(frozen=True)
class FamilySpec:
    """What makes a scene family: photographs, shapes, textures, object counts and sizes, conventions.

    `nested`: chance that an object gets a smaller object inside it (its own mask, carved out of the
    host by occlusion). `decal`: chance that an object gets a painted patch of another texture that
    belongs to it (the host's mask keeps it).
    """

    backgrounds: tuple[str, ...]
    shapes: dict[str, ShapeFn]
    textures: tuple[str, ...]
    num_objects: tuple[int, int]
    radius: tuple[float, float]  # of min(height, width)
    splits: tuple[Split, ...]
    nested: float = 0.0
    decal: float = 0.0


FAMILY_SPECS: dict[Family, FamilySpec] = {
    # motorcycle_right is left out everywhere: it is the stereo twin of motorcycle_left.
    "source": FamilySpec(
        backgrounds=(
            "astronaut.png",
            "coffee.png",
            "chelsea.png",
            "rocket.jpg",
            "motorcycle_left.png",
            "brick.png",
            "grass.png",
            "camera.png",
        ),
        shapes={"ellipse": _ellipse, "polygon": _convex_polygon, "star": _star, "rectangle": _rectangle},
        textures=("flat", "gradient", "stripes", "noise"),
        num_objects=(2, 5),
        radius=(0.08, 0.3),
        splits=("train",),
    ),
    "target": FamilySpec(
        backgrounds=("hubble_deep_field.jpg", "ihc.png", "retina.jpg", "gravel.png", "coins.png", "cell.png"),
        shapes={"ring": _ring, "perforated": _perforated, "handled": _handled, "crescent": _crescent},
        textures=("checker", "dots", "smooth", "gradient"),
        num_objects=(3, 6),
        radius=(0.07, 0.25),
        splits=("train", "test"),
    ),
    "zero_shot": FamilySpec(
        backgrounds=(
            "moon.png",
            "clock_motion.png",
            "page.png",
            "text.png",
            "color.png",
            "microaneurysms.png",
        ),
        shapes={"blob": _blob, "cross": _cross, "polygon": _convex_polygon, "ring": _ring},
        textures=("flat", "stripes", "noise", "checker", "dots", "smooth"),
        num_objects=(4, 8),
        radius=(0.06, 0.2),
        splits=("test",),
        nested=0.35,
        decal=0.35,
    ),
}


def generate_scene(
    seed: int,
    size: tuple[int, int] = (256, 256),
    family: Family = "source",
    split: Split | None = None,
    num_objects: tuple[int, int] | None = None,
) -> Sample:
    """One deterministic scene of `family` (and `split`, default its first): `size` is (height, width),
    `num_objects` an inclusive range (default: the family's).

    Objects are painted in order, later ones occluding earlier ones; objects whose visible area ends
    below max(16, 0.4% of the image) pixels are dropped, so every mask is a usable target.
    """
    spec, split, (low, high) = family_settings(family, split, num_objects)
    height, width = (int(v) for v in size)
    if height < 16 or width < 16:
        raise ConfigError(f"scene size must be at least 16x16, got {width}x{height}")
    rng = np.random.default_rng(_rng_key(seed, family, split))
    background, image = _crop_background(rng, spec.backgrounds, height, width)
    min_area = max(16, int(0.004 * height * width))
    names = list(spec.shapes)
    while True:  # deterministic: only retried (with further draws) if every object ended up hidden
        shapes, kinds = [], []
        for _ in range(rng.integers(low, high + 1)):
            kind = names[rng.integers(len(names))]
            radius = rng.uniform(*spec.radius) * min(height, width)
            cx, cy = rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height
            painted = _paint(rng, spec, kind, image, shapes, kinds, cx, cy, radius)
            if painted and spec.nested and rng.random() < spec.nested:
                inner = names[rng.integers(len(names))]
                _paint(rng, spec, inner, image, shapes, kinds, cx, cy, radius * rng.uniform(0.3, 0.5))
        covered = np.zeros((height, width), bool)
        visible: list[tuple[int, np.ndarray]] = []
        for index in range(len(shapes) - 1, -1, -1):
            mask = shapes[index] & ~covered
            covered |= shapes[index]
            if mask.sum() >= min_area:
                visible.append((index, mask))
        if visible:
            break
    visible.reverse()
    return Sample(
        image=np.clip(np.rint(image), 0, 255).astype(np.uint8),
        masks=[mask for _, mask in visible],
        meta={
            "source": f"synthetic:{family}:{split}:{seed}",
            "image_id": scene_id(seed, family, split),
            "object_ids": [index for index, _ in visible],
            "shapes": [kinds[index] for index, _ in visible],
            "dataset": f"synthetic-{family}",
            "background": background,
        },
    )


def family_settings(
    family: Family, split: Split | None, num_objects: tuple[int, int] | None
) -> tuple[FamilySpec, Split, tuple[int, int]]:
    """A family's spec, the split (default its first) and the object-count range, each checked."""
    if family not in FAMILY_SPECS:
        raise ConfigError(f"family must be one of {FAMILIES}, got {family!r}")
    spec = FAMILY_SPECS[family]
    split = spec.splits[0] if split is None else split
    if split not in spec.splits:
        raise ConfigError(f"family {family} has the split(s) {spec.splits}, not {split!r}")
    low, high = spec.num_objects if num_objects is None else num_objects
    if not 1 <= low <= high:
        raise ConfigError(f"num_objects must be a range 1 <= low <= high, got {num_objects}")
    return spec, split, (low, high)


def _rng_key(seed: int, family: Family, split: Split) -> list[int]:
    # The source family keeps the key the tiny SAM's pretraining used ([seed, 0]).
    if family == "source":
        return [seed, 0]
    return [seed, FAMILIES.index(family) + 1, SPLITS.index(split)]


def _paint(
    rng: np.random.Generator,
    spec: FamilySpec,
    kind: str,
    image: np.ndarray,
    shapes: list[np.ndarray],
    kinds: list[str],
    cx: float,
    cy: float,
    radius: float,
) -> bool:
    """Draw one textured object (and maybe a decal on it) into `image`; False if it fell off the image."""
    height, width = image.shape[:2]
    shape = spec.shapes[kind](rng, cx, cy, radius, height, width)
    rows, cols = np.nonzero(shape)
    if rows.size == 0:
        return False
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    texture_kind, patch = _texture(rng, spec.textures, bottom - top, right - left)
    region = shape[top:bottom, left:right]
    image[top:bottom, left:right][region] = patch[region]
    if spec.decal and rng.random() < spec.decal:
        decal = _ellipse(rng, cx, cy, radius * rng.uniform(0.25, 0.45), height, width) & shape
        _, paint = _texture(rng, spec.textures, height, width)
        image[decal] = paint[decal]
        texture_kind += "+decal"
    shapes.append(shape)
    kinds.append(f"{kind}/{texture_kind}")
    return True


def scene_id(seed: int, family: Family = "source", split: Split = "train") -> str:
    """File stem of a scene: a function of its content, so overlapping seed ranges share files."""
    return f"{family}_{split}_{seed:07d}"


class WriteStats(NamedTuple):
    written: int
    skipped: int


def write_scenes(
    out: Path,
    num: int,
    seed: int,
    size: tuple[int, int] = (256, 256),
    family: Family = "source",
    split: Split | None = None,
) -> WriteStats:
    """Write scenes `seed .. seed+num-1` in the Robust-Seg layout: clear/<id>.jpg and masks/<id>.npy.

    Files are written atomically (masks first, then the image) and existing files are kept, so an
    interrupted run can simply be repeated.
    """
    if num < 1:
        raise ConfigError(f"--num must be >= 1, got {num}")
    if family not in FAMILY_SPECS:
        raise ConfigError(f"family must be one of {FAMILIES}, got {family!r}")
    split = FAMILY_SPECS[family].splits[0] if split is None else split
    out = Path(out)
    written = skipped = 0
    for scene_seed in tqdm(range(seed, seed + num), desc="synth", unit="scene", dynamic_ncols=True):
        stem = scene_id(scene_seed, family, split)
        image_path, mask_path = out / CLEAN_DIR / f"{stem}.jpg", out / MASKS_DIR / f"{stem}.npy"
        if image_path.is_file() and mask_path.is_file():
            skipped += 1
            continue
        sample = generate_scene(scene_seed, size=size, family=family, split=split)
        if not mask_path.is_file():
            save_masks(mask_path, sample.masks)
        if not image_path.is_file():
            save_jpeg(image_path, sample.image)
        written += 1
    return WriteStats(written, skipped)
