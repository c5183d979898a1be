"""The `garasam prepare` command: plan, convert in parallel (resumable), write the manifest."""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from garasam.argtypes import non_negative_int, output_dir
from garasam.data.prepare.archives import SourceTree, describe_sources
from garasam.data.prepare.datasets import DATASETS, Item, Step
from garasam.errors import DataError
from garasam.io import atomic_write_bytes, atomic_write_text, remove_stale_temp_files

MANIFEST = "prepare.json"
MAX_LISTED = 100  # skipped items listed in the manifest; the count covers all


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=sorted(DATASETS), help="which dataset")
    parser.add_argument(
        "--src", nargs="+", type=Path, metavar="PATH", help="the downloaded archives or folders"
    )
    parser.add_argument("--out", type=output_dir, help="output folder")
    parser.add_argument("--split", help="comma-separated splits to prepare (default: every split found)")
    parser.add_argument(
        "--workers", type=non_negative_int, default=min(4, os.cpu_count() or 1), help="worker processes"
    )
    parser.add_argument("--strict", action="store_true", help="stop at the first damaged member")


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


_JOB: Job | None = None


def _init(job: Job) -> None:
    global _JOB
    _JOB = job


def _work(item: Item) -> Outcome:
    assert _JOB is not None
    return convert(_JOB, item)


def _instructions(name: str) -> str:
    spec = DATASETS[name]
    lines = [f"garasam prepare {name}: {spec.title}", "Download (garasam downloads nothing) from:"]
    lines += [f"  {url}" for url in spec.urls]
    lines += ["and pass the files with --src:"] + [f"  {file}" for file in spec.files]
    lines.append(
        f"e.g. garasam prepare {name} --src {' '.join(f.split()[0] for f in spec.files)} --out data/{name}"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if not args.src or args.out is None:
        print(_instructions(args.dataset), file=sys.stderr)
        print("garasam prepare: error: --src and --out are required", file=sys.stderr)
        return 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(out)
    splits = [s.strip() for s in args.split.split(",") if s.strip()] if args.split else None
    tree = SourceTree(list(args.src), out / ".sources")
    plan = DATASETS[args.dataset].plan(tree, splits)
    if not plan.items and splits is not None:
        found = sorted(DATASETS[args.dataset].plan(tree, None).readers)
        raise DataError(
            f"{args.dataset}: no split {', '.join(splits)} in the sources; they hold "
            + (", ".join(found) if found else "no usable split")
        )
    if not plan.items:
        first = f"; first problem: {plan.skipped[0]}" if plan.skipped else ""
        raise DataError(
            f"{args.dataset}: nothing to prepare from {', '.join(map(str, args.src))}{first}\n{_instructions(args.dataset)}"
        )
    for target, content in plan.files.items():
        if not (out / target).is_file():
            atomic_write_bytes(out / target, content)
    job = Job(tree, out, args.strict)
    counts: dict[str, Counter] = {}
    problems = list(plan.skipped)
    bar = tqdm(total=len(plan.items), desc=f"prepare {args.dataset}", unit="image", file=sys.stderr)
    if args.workers > 0 and len(plan.items) > 1:
        with multiprocessing.get_context("spawn").Pool(args.workers, _init, (job,)) as pool:
            outcomes = pool.imap_unordered(_work, plan.items, chunksize=16)
            _collect(outcomes, counts, problems, bar)
    else:
        _collect((convert(job, item) for item in plan.items), counts, problems, bar)
    bar.close()
    readers = {split: spec.format(out=out) for split, spec in plan.readers.items()}
    manifest = {
        "dataset": args.dataset,
        "sources": describe_sources(list(args.src)),
        "splits": {split: dict(c) for split, c in sorted(counts.items())},
        "readers": readers,
        "skipped": len(problems),
        "problems": problems[:MAX_LISTED],
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    for split, c in sorted(counts.items()):
        print(f"{split}: {c['images']} images ({c['written']} files written, {c['existing']} already there)")
    if problems:
        print(f"skipped {len(problems)} item(s), listed in {out / MANIFEST}; first: {problems[0]}")
    for split, spec in readers.items():
        print(f"read {split} with --data {spec}")
    return 0


def _collect(outcomes, counts: dict[str, Counter], problems: list[str], bar: tqdm) -> None:  # noqa: ANN001
    for outcome in outcomes:
        bar.update(1)
        if outcome.problem is not None:
            problems.append(outcome.problem)
            continue
        c = counts.setdefault(outcome.split, Counter())
        c["images"] += 1
        c["written"] += outcome.written
        c["existing"] += outcome.existing
