"""What each dataset's official download looks like, and where its files go in our reader layouts.

A dataset's `plan` looks at the user's sources (`SourceTree`) and returns the files to write: one
`Item` per image (its masks first, the image last, so a present image means a finished item), the
annotation files to copy once, and the reader spec that reads the result. Converting copies bytes
as they are (no re-encoding); every image and mask is decoded once on the way to catch damaged
members, which are skipped and listed in the manifest (or stop the run with `--strict`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from garasam.data.prepare.archives import SourceTree
from garasam.errors import DataError


@dataclass(frozen=True)
class Step:
    """Write `member` of the sources to `target` (a path relative to the output), checked as `kind`."""

    kind: str  # "image", "mask_png", "masks_npy", or "polygons" (masks drawn from `polygons`)
    member: str  # the source member; for "polygons", the annotation file they come from
    target: str
    polygons: tuple[tuple[tuple[float, ...], tuple[float, ...]], ...] = ()  # per object (xs, ys)


@dataclass(frozen=True)
class Item:
    """One image with its annotation files; done when its last target exists."""

    split: str
    steps: tuple[Step, ...]


@dataclass
class Plan:
    items: list[Item] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)  # target -> content, written once (JSON)
    readers: dict[str, str] = field(default_factory=dict)  # split -> reader spec; {out} = the output folder
    skipped: list[str] = field(default_factory=list)  # what the sources lack, item by item


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    title: str
    urls: tuple[str, ...]  # where the user downloads it (pages, not fetched by us)
    files: tuple[str, ...]  # the archives to pass to --src
    plan: Callable[[SourceTree, Sequence[str] | None], Plan]


def _split_of(tree: SourceTree, name: str, above: str, known: Sequence[str]) -> str | None:
    """The split of a member: the folder above `above/` inside its source, else the folder holding
    the source archive, when either is one of `known`."""
    parts = PurePosixPath(name).parts
    if above in parts:
        index = parts.index(above)
        if index > 0 and parts[index - 1] in known:
            return parts[index - 1]
    holder = tree.members[name].path
    candidate = holder.parent.name if tree.members[name].in_zip else None
    return candidate if candidate in known else None


def _wanted(split: str, splits: Sequence[str] | None) -> bool:
    return splits is None or split in splits


def plan_robust_seg(tree: SourceTree, splits: Sequence[str] | None) -> Plan:
    """RobustSAM's release: per split `clear.zip` (clear/<id>.jpg) and `masks.zip` (masks/<id>.npy)."""
    known = ("train", "val", "test", "coco", "lvis")
    pairs: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for kind, pattern, folder in (("image", "**/clear/*.jpg", "clear"), ("masks", "**/masks/*.npy", "masks")):
        for name in tree.find(pattern):
            split = (splits[0] if splits and len(splits) == 1 else None) or _split_of(
                tree, name, folder, known
            )
            pairs[(split or "all", PurePosixPath(name).stem)][kind] = name
    plan = Plan()
    for (split, stem), found in sorted(pairs.items()):
        if not _wanted(split, splits):
            continue
        if "image" not in found or "masks" not in found:
            missing = "masks/" + stem + ".npy" if "image" in found else "clear/" + stem + ".jpg"
            plan.skipped.append(f"{split}/{stem}: {missing} is not in the sources")
            continue
        plan.items.append(
            Item(
                split,
                (
                    Step("masks_npy", found["masks"], f"{split}/masks/{stem}.npy"),
                    Step("image", found["image"], f"{split}/clear/{stem}.jpg"),
                ),
            )
        )
        plan.readers[split] = "robustseg:{out}/" + split
    return plan


@dataclass(frozen=True)
class ImageLayout:
    """Where a COCO-format file's images live: `member_key` names each image member of the sources
    (None: not an image of this dataset), `image_key` each image record of the JSON, by the same key;
    images are written to `<root>/<key>` and the reader is told `images=<root>`."""

    member_pattern: str
    member_key: Callable[[str], str | None]
    image_key: Callable[[dict, str], str]
    root: str = ""


def _coco_folder_key(name: str) -> str:
    path = PurePosixPath(name)
    return f"{path.parent.name}/{path.name}"


def _coco_image_key(image: dict, split: str) -> str:
    """`<folder>/<file>`: the folder of its `coco_url` (LVIS mixes train2017 and val2017), else the split's."""
    url = str(image.get("coco_url") or "")
    if url:
        return f"{PurePosixPath(url).parent.name}/{PurePosixPath(url).name}"
    return f"{split}2017/{image.get('file_name')}"


COCO_IMAGES = ImageLayout("**/*2017/*.jpg", _coco_folder_key, _coco_image_key)


def _coco_like(
    tree: SourceTree,
    splits: Sequence[str] | None,
    pattern: str,
    split_of: Callable[[str], str],
    layout: ImageLayout = COCO_IMAGES,
) -> Plan:
    """COCO-format annotations (COCO, LVIS, ACDC): each image the JSON lists is looked up in the sources
    by `layout`; the JSON is copied as `annotations/<name>`."""
    members: dict[str, str] = {}
    for name in tree.find(layout.member_pattern):
        key = layout.member_key(name)
        if key is not None:
            members.setdefault(key, name)
    plan = Plan()
    for name in tree.find(pattern):
        file = PurePosixPath(name).name
        split = split_of(file)
        if not _wanted(split, splits):
            continue
        raw = tree.read(name)
        try:
            listed = [layout.image_key(image, split) for image in json.loads(raw)["images"]]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise DataError(f"{name}: not a COCO-format annotation file (no 'images' list)") from None
        missing = [key for key in listed if key not in members]
        if len(missing) == len(listed):
            plan.skipped.append(
                f"{file}: none of its {len(listed)} images is in the sources (e.g. {layout.root}{listed[0] if listed else ''}); "
                "add the image archive(s)"
            )
            continue
        if missing:
            raise DataError(
                f"incomplete sources: {layout.root}{missing[0]} is missing ({len(missing)} of the {len(listed)} "
                f"images {file} lists); is an image archive truncated or missing?"
            )
        target = f"annotations/{file}"
        plan.files[target] = raw
        folders = {PurePosixPath(key).parent for key in listed}
        root = layout.root.rstrip("/")
        if root:
            only = f"?images={{out}}/{root}"
        elif len(folders) == 1:  # a JSON without coco_url finds its one folder
            only = f"?images={{out}}/{next(iter(folders))}"
        else:
            only = ""
        plan.readers[split] = "coco:{out}/" + target + only
        for key in dict.fromkeys(listed):
            plan.items.append(Item(split, (Step("image", members[key], f"{layout.root}{key}"),)))
    return plan


def coco_format(
    pattern: str,
    prefix: str,
    suffix: str,
    layout: ImageLayout = COCO_IMAGES,
    default: tuple[str, ...] | None = None,
) -> Callable[[SourceTree, Sequence[str] | None], Plan]:
    """The plan of a dataset whose annotation files match `pattern` and are named `<prefix><split><suffix>`;
    `default` are the splits taken when --split is not given (None: all)."""

    def plan(tree: SourceTree, splits: Sequence[str] | None) -> Plan:
        def split_of(name: str) -> str:
            return name.removeprefix(prefix).removesuffix(suffix)

        return _coco_like(tree, splits if splits is not None else default, pattern, split_of, layout)

    return plan


def _after_rgb_anon(name: str) -> str | None:
    head, sep, tail = name.rpartition("rgb_anon/")
    return tail if sep else None


ACDC_IMAGES = ImageLayout(
    "**/rgb_anon/**/*_rgb_anon.png", _after_rgb_anon, lambda image, _: str(image["file_name"]), "rgb_anon/"
)


LIS_IMAGES = ImageLayout(
    "**/RGB-dark/JPEGImages/*",
    lambda name: PurePosixPath(name).name,
    lambda image, _: PurePosixPath(str(image["file_name"])).name,
    "RGB-dark/JPEGImages/",
)


def _pairs(
    tree: SourceTree, images: str, masks: str, split_for: Callable[[str], str | None], plan: Plan, out: str
) -> None:
    """Image + PNG mask pairs by file stem into `<split>/images/` and `<split>/masks/` (folder reader)."""
    mask_by_stem = {PurePosixPath(n).stem: n for n in tree.find(masks)}
    for name in tree.find(images):
        stem = PurePosixPath(name).stem
        split = split_for(stem)
        if split is None:
            continue
        mask = mask_by_stem.get(stem)
        if mask is None:
            plan.skipped.append(f"{name}: no mask {stem}.png in the sources")
            continue
        root = f"{out}/{split}" if out else split
        plan.items.append(
            Item(
                split,
                (
                    Step("mask_png", mask, f"{root}/masks/{stem}.png"),
                    Step("image", name, f"{root}/images/{PurePosixPath(name).name}"),
                ),
            )
        )
        plan.readers[split] = "folder:{out}/" + root


def plan_msra10k(tree: SourceTree, splits: Sequence[str] | None) -> Plan:
    """`MSRA10K_Imgs_GT.zip`: `Imgs/<n>.jpg` with `Imgs/<n>.png` beside; no official split."""
    plan = Plan()
    _pairs(
        tree, "**/Imgs/*.jpg", "**/Imgs/*.png", lambda s: "all" if _wanted("all", splits) else None, plan, ""
    )
    return plan


def plan_thinobject5k(tree: SourceTree, splits: Sequence[str] | None) -> Plan:
    """`ThinObject5K.zip`: `images/*.jpg`, `masks/*.png` and `list/{train,test}.txt` (the official split)."""
    split_of: dict[str, str] = {}
    for name in tree.find("**/list/*.txt"):
        split = PurePosixPath(name).stem
        for line in tree.read(name).decode("utf-8", "replace").splitlines():
            if line.strip():
                split_of.setdefault(PurePosixPath(line.strip()).stem, split)

    def split_for(stem: str) -> str | None:
        split = split_of.get(stem, "all" if not split_of else None)
        return split if split is not None and _wanted(split, splits) else None

    plan = Plan()
    _pairs(tree, "**/images/*.jpg", "**/masks/*.png", split_for, plan, "")
    return plan


def plan_bdd100k(tree: SourceTree, splits: Sequence[str] | None) -> Plan:
    """`bdd100k_images_10k.zip` and `bdd100k_ins_seg_labels_trainval.zip`: instance bitmasks per image,
    kept in BDD's own layout, which the `cityscapes:` reader reads (`id_format=bdd100k`)."""
    images = {}
    for name in tree.find("**/images/10k/*/*.jpg"):
        path = PurePosixPath(name)
        images[(path.parent.name, path.stem)] = name
    plan = Plan()
    for name in tree.find("**/labels/ins_seg/bitmasks/*/*.png"):
        path = PurePosixPath(name)
        split = path.parent.name
        if not _wanted(split, splits):
            continue
        image = images.get((split, path.stem))
        if image is None:
            plan.skipped.append(f"{name}: no images/10k/{split}/{path.stem}.jpg in the sources")
            continue
        plan.items.append(
            Item(
                split,
                (
                    Step("mask_png", name, f"labels/ins_seg/bitmasks/{split}/{path.name}"),
                    Step("image", image, f"images/10k/{split}/{path.stem}.jpg"),
                ),
            )
        )
        plan.readers[split] = "cityscapes:{out}?mask_glob=labels/ins_seg/bitmasks/" + split + "/*.png"
    return plan


def _via_regions(record: dict) -> list[tuple[tuple[float, ...], tuple[float, ...]]]:
    """Polygons of one image of a VIA (VGG Image Annotator) project: `regions` is a list, or in VIA 1
    a dict keyed "0", "1", ...; shapes other than polygons are left out."""
    regions = record.get("regions") or []
    if isinstance(regions, dict):
        regions = list(regions.values())
    polygons = []
    for region in regions:
        shape = region.get("shape_attributes") or {}
        xs, ys = shape.get("all_points_x"), shape.get("all_points_y")
        if isinstance(xs, list) and isinstance(ys, list) and len(xs) == len(ys) >= 3:
            polygons.append((tuple(map(float, xs)), tuple(map(float, ys))))
    return polygons


def plan_ndd20(tree: SourceTree, splits: Sequence[str] | None) -> Plan:
    """NDD20: `ABOVE/` and `BELOW/` images with `ABOVE_LABELS.json` / `BELOW_LABELS.json` (VIA polygons);
    each polygon is one object, drawn into masks; the two sets are the splits `above` and `below`."""
    plan = Plan()
    for labels in tree.find("**/*_LABELS.json"):
        split = PurePosixPath(labels).name.removesuffix("_LABELS.json").lower()
        if not _wanted(split, splits):
            continue
        folder = split.upper()
        images = {PurePosixPath(n).name: n for n in tree.find(f"**/{folder}/*")}
        try:
            records = json.loads(tree.read(labels))
            entries = list(records.values()) if isinstance(records, dict) else []
        except ValueError:
            raise DataError(f"{labels}: not a VIA annotation file (JSON)") from None
        for record in entries:
            name = str(record.get("filename", "")) if isinstance(record, dict) else ""
            if name not in images:
                plan.skipped.append(f"{labels}: {folder}/{name or '?'} is not in the sources")
                continue
            polygons = _via_regions(record)
            if not polygons:
                plan.skipped.append(f"{labels}: {name} has no polygon")
                continue
            stem = PurePosixPath(name).stem
            plan.items.append(
                Item(
                    split,
                    (
                        Step("polygons", labels, f"{split}/masks/{stem}.npy", tuple(polygons)),
                        Step("image", images[name], f"{split}/clear/{name}"),
                    ),
                )
            )
            plan.readers[split] = "robustseg:{out}/" + split
    return plan


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "robust-seg",
            "Robust-Seg (RobustSAM's release: LVIS + MSRA10K + ThinObject-5K train/val, test, extra COCO and LVIS)",
            ("https://huggingface.co/robustsam/robustsam/tree/main/dataset",),
            ("<split>/clear.zip", "<split>/masks.zip  (split: train, val, test, coco, lvis)"),
            plan_robust_seg,
        ),
        DatasetSpec(
            "coco2017",
            "COCO 2017 instance segmentation",
            ("https://cocodataset.org/#download",),
            ("annotations_trainval2017.zip", "val2017.zip", "train2017.zip"),
            coco_format("**/instances_*2017.json", "instances_", "2017.json"),
        ),
        DatasetSpec(
            "lvis",
            "LVIS v1 (annotations on the COCO 2017 images)",
            ("https://www.lvisdataset.org/dataset", "https://cocodataset.org/#download"),
            ("lvis_v1_val.json.zip", "lvis_v1_train.json.zip", "val2017.zip", "train2017.zip"),
            # images found by their coco_url: LVIS v1 val uses train2017 and val2017 images
            coco_format("**/lvis_v1_*.json", "lvis_v1_", ".json"),
        ),
        DatasetSpec(
            "msra10k",
            "MSRA10K salient objects",
            ("https://mmcheng.net/msra10k/",),
            ("MSRA10K_Imgs_GT.zip",),
            plan_msra10k,
        ),
        DatasetSpec(
            "thinobject5k",
            "ThinObject-5K",
            ("https://github.com/liewjunhao/thin-object-selection",),
            ("ThinObject5K.zip",),
            plan_thinobject5k,
        ),
        DatasetSpec(
            "acdc",
            "ACDC, adverse conditions (fog, night, rain, snow): the official instance annotations",
            ("https://acdc.vision.ee.ethz.ch/download",),
            ("rgb_anon_trainvaltest.zip", "gt_detection_trainval.zip"),
            # the official instance annotations, derived from the panoptic labels: the 8 Cityscapes
            # thing classes are the objects, stuff is not
            coco_format(
                "**/instancesonly_*_gt_detection.json", "instancesonly_", "_gt_detection.json", ACDC_IMAGES
            ),
        ),
        DatasetSpec(
            "ndd20",
            "NDD20, the Northumberland Dolphin Dataset (above and below water)",
            ("https://doi.org/10.25405/data.ncl.c.4982342",),
            ("NDD20.zip",),
            plan_ndd20,
        ),
        DatasetSpec(
            "lis",
            "LIS, low-light instance segmentation (the dark sRGB images)",
            ("https://github.com/Linwei-Chen/LIS#dataset-download",),
            ("LIS/RGB-dark/ (folder or archive)", "LIS/annotations/ (folder or archive)"),
            # '+1' files label the dark images (the dataset's README); the traintest union only on request
            coco_format(
                "**/lis_coco_JPG_*+1.json", "lis_coco_JPG_", "+1.json", LIS_IMAGES, ("train", "test")
            ),
        ),
        DatasetSpec(
            "bdd100k",
            "BDD-100K instance segmentation (10K images)",
            ("https://bdd-data.berkeley.edu/",),
            ("bdd100k_images_10k.zip", "bdd100k_ins_seg_labels_trainval.zip"),
            plan_bdd100k,
        ),
    )
}
