"""`garasam prepare davis | youtube-vos | mose`: the video datasets from their official archives, in
the frames + masks layout (`<split>/<video>/frames/<frame>.jpg`, `<split>/<video>/masks/<frame>.png`,
masks only where the dataset annotates), read back with `--data frames:<out>/<split>`.

- DAVIS 2017 (`DAVIS-2017-trainval-480p.zip`): `DAVIS/JPEGImages/480p/<seq>/`,
  `DAVIS/Annotations/480p/<seq>/`, the splits from `DAVIS/ImageSets/2017/{train,val}.txt`.
- YouTube-VOS 2019 (`train.zip`, `valid.zip`) and MOSE (`train.tar.gz`, `valid.tar.gz`):
  `<split>/JPEGImages/<video>/`, `<split>/Annotations/<video>/` (sparse); YouTube-VOS's
  `<split>/meta.json` is copied beside the split.

Every frame is one item (its mask first, the frame last), so an interrupted run resumes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath

from garasam.data.prepare.archives import SourceTree
from garasam.data.prepare.datasets import DatasetSpec, Item, Plan, Step, _wanted
from garasam.errors import DataError


def plan_davis(tree: SourceTree, splits: Sequence[str] | None) -> Plan:
    """DAVIS 2017 trainval at 480p, split by its ImageSets lists."""
    lists = {PurePosixPath(n).stem: n for n in tree.find("**/ImageSets/2017/*.txt")}
    if not lists:
        raise DataError(
            "davis: no ImageSets/2017/train.txt or val.txt in the sources (DAVIS-2017-trainval-480p.zip)"
        )
    plan = Plan()
    for split in sorted(lists):
        if not _wanted(split, splits):
            continue
        sequences = [line.strip() for line in tree.read(lists[split]).decode().splitlines() if line.strip()]
        for sequence in sequences:
            frames = tree.find(f"**/JPEGImages/480p/{sequence}/*.jpg")
            if not frames:
                plan.skipped.append(
                    f"{split}/{sequence}: no JPEGImages/480p/{sequence} frames in the sources"
                )
                continue
            masks = {PurePosixPath(n).stem: n for n in tree.find(f"**/Annotations/480p/{sequence}/*.png")}
            _add_video(plan, split, sequence, frames, masks)
        plan.readers[split] = "frames:{out}/" + split
    return plan


def _vos_plan(dataset: str, known: tuple[str, ...]) -> Callable[[SourceTree, Sequence[str] | None], Plan]:
    """The plan of a YouTube-VOS-layout dataset whose split folders are `known`."""

    def plan_vos(tree: SourceTree, splits: Sequence[str] | None) -> Plan:
        videos: dict[tuple[str, str], dict[str, list[str] | dict[str, str]]] = defaultdict(
            lambda: {"frames": [], "masks": {}}
        )
        for name in tree.find("**/JPEGImages/*/*.jpg"):
            parts = PurePosixPath(name).parts
            split = _split(parts, known)
            if split is not None and _wanted(split, splits):
                videos[(split, parts[-2])]["frames"].append(name)
        for name in tree.find("**/Annotations/*/*.png"):
            parts = PurePosixPath(name).parts
            split = _split(parts, known)
            if split is not None and (split, parts[-2]) in videos:
                videos[(split, parts[-2])]["masks"][PurePosixPath(name).stem] = name
        plan = Plan()
        for (split, video), found in sorted(videos.items()):
            if not found["masks"]:
                plan.skipped.append(f"{split}/{video}: no annotation of any frame in the sources")
                continue
            _add_video(plan, split, video, sorted(found["frames"]), found["masks"])
            plan.readers[split] = "frames:{out}/" + split
        for meta in tree.find("**/meta.json"):
            folders = PurePosixPath(meta).parts[:-1]
            split = folders[-1] if folders else None
            if split in plan.readers:
                plan.files[f"{split}/meta.json"] = tree.read(meta)
        if not plan.items and not plan.skipped:
            plan.skipped.append(
                f"{dataset}: no <split>/JPEGImages/<video>/*.jpg ({', '.join(known)}) in the sources"
            )
        return plan

    return plan_vos


def _split(parts: tuple[str, ...], known: tuple[str, ...]) -> str | None:
    """The split folder just above JPEGImages/ or Annotations/."""
    for anchor in ("JPEGImages", "Annotations"):
        if anchor in parts:
            index = parts.index(anchor)
            return parts[index - 1] if index > 0 and parts[index - 1] in known else None
    return None


def _add_video(plan: Plan, split: str, video: str, frames: list[str], masks: dict[str, str]) -> None:
    stems = {PurePosixPath(f).stem for f in frames}
    strays = sorted(set(masks) - stems)
    if strays:
        plan.skipped.append(
            f"{split}/{video}: masks without a frame ({', '.join(strays[:3])}): video left out"
        )
        return
    for frame in frames:
        stem = PurePosixPath(frame).stem
        steps = []
        if stem in masks:
            steps.append(Step("mask_png", masks[stem], f"{split}/{video}/masks/{stem}.png"))
        steps.append(Step("image", frame, f"{split}/{video}/frames/{stem}.jpg"))
        plan.items.append(Item(split, tuple(steps)))


VIDEO_DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "davis",
            "DAVIS 2017 semi-supervised video object segmentation (trainval, 480p)",
            ("https://davischallenge.org/davis2017/code.html",),
            ("DAVIS-2017-trainval-480p.zip",),
            plan_davis,
        ),
        DatasetSpec(
            "youtube-vos",
            "YouTube-VOS 2019 video object segmentation (train with every 5th frame annotated, valid with first frames)",
            ("https://youtube-vos.org/dataset/vos/",),
            ("train.zip", "valid.zip"),
            _vos_plan("youtube-vos", ("train", "valid", "test")),
        ),
        DatasetSpec(
            "mose",
            "MOSE, complex video object segmentation (train, valid with first frames)",
            ("https://henghuiding.github.io/MOSE/",),
            ("train.tar.gz", "valid.tar.gz"),
            _vos_plan("mose", ("train", "valid")),
        ),
    )
}
