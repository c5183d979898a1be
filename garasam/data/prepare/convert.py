"""Converting one item of a prepared dataset: read its image and masks from the official archives, draw
or check them, and write them in the Robust-Seg layout; `init_worker` / `work_on` run it in a pool."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageDraw

from garasam.data.prepare.archives import SourceTree
from garasam.data.prepare.datasets import Item, Step
from garasam.errors import DataError
from garasam.io import atomic_write_bytes


@dataclass
class Outcome:
    split: str
    written: int = 0
    existing: int = 0
    problem: str | None = None


@dataclass
class Job:
    """What every worker needs: the sources, the output folder, and whether to stop at a damaged item."""

    tree: SourceTree
    out: Path
    strict: bool


def convert(job: Job, item: Item) -> Outcome:
    """Write one item's files (masks first, the image last); finished files are kept."""
    outcome = Outcome(item.split)
    if (job.out / item.steps[-1].target).is_file():
        outcome.existing = len(item.steps)
        return outcome
    ordered = sorted(item.steps, key=lambda s: s.kind == "image")  # masks first, the image last
    image = ordered[-1]
    try:
        for step in ordered:  # a member or JSON name such as ../../x must not write outside --out
            parts = PurePosixPath(step.target).parts
            if PurePosixPath(step.target).is_absolute() or ".." in parts:
                raise DataError(f"{step.member}: refusing to write {step.target!r} outside the output folder")
        data = {image.target: job.tree.read(image.member)}
        size = _check(image, data[image.target])
        for step in ordered[:-1]:
            if step.kind == "polygons":
                data[step.target] = _draw(step, size)
                continue
            data[step.target] = job.tree.read(step.member)
            shape = _check(step, data[step.target])
            if shape != size:  # masks must fit their image
                raise DataError(
                    f"{step.member}: mask is {shape[1]}x{shape[0]}, its image {image.member} {size[1]}x{size[0]}"
                )
    except DataError as err:
        if job.strict:
            raise
        outcome.problem = str(err)
        return outcome
    for step in ordered:
        target = job.out / step.target
        if target.is_file():
            outcome.existing += 1
            continue
        atomic_write_bytes(target, data[step.target])
        outcome.written += 1
    return outcome


def _draw(step: Step, size: tuple[int, int]) -> bytes:
    """Polygons (pixel coordinates) filled into bool masks [N, H, W], as .npy bytes."""
    height, width = size
    masks = np.zeros((len(step.polygons), height, width), bool)
    for index, (xs, ys) in enumerate(step.polygons):
        points = np.stack([xs, ys], axis=1)
        if not np.isfinite(points).all() or np.abs(points).max() > 4 * max(height, width):
            raise DataError(
                f"{step.member}: a polygon of {step.target} lies far outside its {width}x{height} image"
            )
        canvas = Image.new("L", (width, height), 0)
        ImageDraw.Draw(canvas).polygon([tuple(p) for p in points.tolist()], fill=1, outline=1)
        masks[index] = np.asarray(canvas, dtype=bool)
    buffer = io.BytesIO()
    np.save(buffer, masks, allow_pickle=False)
    return buffer.getvalue()


def _check(step: Step, data: bytes) -> tuple[int, int]:
    """Decode a member fully (a truncated file fails here) and return its (height, width)."""
    try:
        if step.kind == "masks_npy":
            masks = np.load(io.BytesIO(data), allow_pickle=False)
            if masks.ndim != 3 or masks.dtype != bool:
                raise DataError(
                    f"{step.member}: expected bool masks [N, H, W], got {masks.dtype} {masks.shape}"
                )
            return int(masks.shape[1]), int(masks.shape[2])
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.height, image.width
    except DataError:
        raise
    except Exception as err:  # noqa: BLE001 - PIL and NumPy raise many kinds for damaged files
        raise DataError(f"{step.member}: damaged or not a {step.kind.replace('_', ' ')} ({err})") from None


_JOB: Job | None = None  # the job of this worker process (init_worker)


def init_worker(job: Job) -> None:
    global _JOB
    _JOB = job


def work_on(item: Item) -> Outcome:
    assert _JOB is not None
    return convert(_JOB, item)
