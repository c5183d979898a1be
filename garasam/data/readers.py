"""Dataset readers: every supported layout becomes a lazy sequence of `Sample`s.

Training, evaluation, `garasam corrupt` and prediction all read data through `open_dataset("reader:path")`,
so a dataset problem (missing file, truncated image, mask of the wrong size) is handled the same way
everywhere: with `strict=False` the item is skipped and recorded in `reader.problems`; with `strict=True`
a `DataError` naming the file is raised.
"""

from __future__ import annotations

import abc
import inspect
import json
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl, urlparse

import numpy as np
from PIL import Image, ImageOps

from garasam.data.coco_masks import decode_segmentation
from garasam.errors import ConfigError, DataError
from garasam.io import atomic_path

# The Robust-Seg layout (RobustSAM): written by `garasam synth` / `garasam corrupt`, read by `robustseg`.
CLEAN_DIR = "clear"
MASKS_DIR = "masks"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def masks_dir_for(folder: str) -> str:
    """Mask folder of a geometric degradation folder (its masks are warped with the image)."""
    return f"{MASKS_DIR}_{folder}"


def save_masks(path: str | Path, masks: list[np.ndarray] | np.ndarray) -> None:
    """Atomically write masks as one [N, H, W] bool .npy file."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.asarray(masks, dtype=bool), allow_pickle=False)


def save_jpeg(path: str | Path, image: np.ndarray, quality: int = 95) -> None:
    """Atomically write an H x W x 3 uint8 RGB image as JPEG (full-resolution chroma)."""
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(
            tmp, format="JPEG", quality=quality, subsampling=0
        )  # 4:4:4: keep colour edges


@dataclass
class Sample:
    """One image with its object masks.

    `meta` holds at least source, image_id, object_ids and dataset; list-valued entries (object_ids,
    category_ids) have one element per mask.
    """

    image: np.ndarray  # H x W x 3 uint8 RGB
    masks: list[np.ndarray]  # bool H x W, one per object
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Problem:
    """An item (image or object) that was skipped, and why."""

    item: str
    reason: str

    def __str__(self) -> str:
        return f"{self.item}: {self.reason}"


def load_image(path: str | Path) -> np.ndarray:
    """Read any image as H x W x 3 uint8 RGB in its displayed orientation (EXIF applied).

    Grayscale, palette, RGBA and 16-bit images are converted, so downstream code sees one format.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()  # decode now: a truncated file fails here, not later in a worker
            img = ImageOps.exif_transpose(img)
            if img.mode.startswith("I") or img.mode == "F":
                return _high_depth_to_rgb(np.asarray(img), img.mode)
            if img.mode in ("P", "PA"):
                img = img.convert("RGBA")
            return np.array(img.convert("RGB"), dtype=np.uint8)  # a writable copy
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: cannot read image ({err})") from None


def _high_depth_to_rgb(array: np.ndarray, mode: str) -> np.ndarray:
    """16-bit (and 32-bit integer) images map 0..65535 to 0..255; float images 0..1 (or 0..255) to 0..255."""
    values = array.astype(np.float64)
    if mode == "F" and values.size and float(values.max()) <= 1.0:
        values = values * 255.0
    elif mode != "F":
        values = values / 257.0
    gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def read_label_map(path: str | Path) -> tuple[np.ndarray, str]:
    """Read a mask / id PNG as an integer array without colour conversion, plus its PIL mode.

    Palette PNGs give their palette indices (the labels), not colours. RGB(A) masks keep their channels.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            array = np.asarray(img)
    except FileNotFoundError:
        raise DataError(f"{path}: mask file not found") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: cannot read mask ({err})") from None
    if array.dtype == bool:
        array = array.astype(np.uint8)
    return array, mode


def _check_mask_size(mask_shape: tuple[int, ...], image: np.ndarray, mask_source: Path | str) -> None:
    if tuple(mask_shape[-2:]) != image.shape[:2]:
        raise DataError(
            f"{mask_source}: mask size {mask_shape[-1]}x{mask_shape[-2]} differs from "
            f"image size {image.shape[1]}x{image.shape[0]}"
        )


ObjectsOption = Literal["all", "largest"]


class Reader(Sequence[Sample], abc.ABC):
    """A dataset as a lazy `Sequence[Sample]`.

    Pairing (which image goes with which masks) is resolved when the reader is built; images and masks
    are only read on access. Indexing a bad item raises `DataError` (and records it in `problems`);
    iterating skips bad items when `strict=False`. Use `get(i)` for "sample or None".
    """

    name: ClassVar[str]

    def __init__(
        self,
        root: str | Path,
        *,
        objects: ObjectsOption = "all",
        min_area: int = 0,
        max_objects: int | None = None,
        strict: bool = False,
    ) -> None:
        if objects not in ("all", "largest"):
            raise ConfigError(f"objects must be 'all' or 'largest', got {objects!r}")
        if min_area < 0:
            raise ConfigError(f"min_area must be >= 0, got {min_area}")
        if max_objects is not None and max_objects < 1:
            raise ConfigError(f"max_objects must be >= 1 or None, got {max_objects}")
        self.root = Path(root)
        self.objects = objects
        self.min_area = int(min_area)
        self.max_objects = max_objects
        self.strict = strict
        self._problems: dict[str, Problem] = {}
        self._options: dict[str, Any] = {}  # every constructor argument, for `with_options`
        # (image id, image file, what `_load` needs besides the image), filled by the subclass
        self._items: list[tuple[str, Path, Any]] = []

    @abc.abstractmethod
    def _load(self, index: int) -> Sample:
        """Read item `index` with all its objects; raise DataError for a bad item."""

    # -- public API ---------------------------------------------------------------------------------
    @property
    def problems(self) -> list[Problem]:
        """Items and objects skipped so far (discovery, then every access), with reasons."""
        return list(self._problems.values())

    def __len__(self) -> int:
        return len(self._items)

    def image_id(self, index: int) -> str:
        """Stable id of item `index`, known without reading any file (output files are named after it)."""
        return self._items[self._normalise_index(index)][0]

    def image_path(self, index: int) -> Path:
        """The image file of item `index`, known without reading it."""
        return self._items[self._normalise_index(index)][1]

    @typing.overload
    def __getitem__(self, index: int) -> Sample: ...

    @typing.overload
    def __getitem__(self, index: slice) -> Sequence[Sample]: ...

    def __getitem__(self, index: int | slice) -> Sample | Sequence[Sample]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = self._normalise_index(index)
        try:
            return self._select(self._load(index))
        except DataError as err:
            self._record(str(self._items[index][1]), str(err))
            raise

    def get(self, index: int) -> Sample | None:
        """Sample `index`, or None for a bad item when not strict (the reason goes to `problems`)."""
        try:
            return self[index]
        except DataError:
            if self.strict:
                raise
            return None

    def __iter__(self) -> Iterator[Sample]:
        yielded = 0
        for index in range(len(self)):
            sample = self.get(index)
            if sample is not None:
                yielded += 1
                yield sample
        if yielded == 0:
            raise DataError(
                f"{self.root}: none of the {len(self)} items of this {self.name} dataset could be read; "
                f"first problem: {self.problems[0] if self.problems else 'none recorded'}"
            )

    def with_options(self, **changes: Any) -> Reader:
        """A new reader over the same data with some options changed (e.g. `degradation="fog"`)."""
        return type(self)(**{**self._options, **changes})

    def problem_summary(self) -> str:
        """One line for the end of a command: how many items were skipped and the first reason."""
        problems = self.problems
        if not problems:
            return f"{self.name}:{self.root}: no problems"
        return f"{self.name}:{self.root}: {len(problems)} problem(s), first: {problems[0]}"

    # -- shared machinery ---------------------------------------------------------------------------
    def _remember_options(self, local_vars: dict[str, Any]) -> None:
        """Store constructor arguments so `with_options` can rebuild the reader."""
        params = inspect.signature(type(self).__init__).parameters
        self._options = {name: local_vars[name] for name in params if name != "self"}

    def _record(self, item: str, reason: str) -> None:
        self._problems.setdefault(f"{item}\0{reason}", Problem(item, reason))

    def _discovery_problem(self, item: str | Path, reason: str) -> None:
        """A pairing problem found while indexing: raise when strict, else remember and skip the item."""
        if self.strict:
            raise DataError(f"{item}: {reason}")
        self._record(str(item), reason)

    def _require_items(self, count: int, expected: str) -> None:
        if count == 0:
            detail = (
                f"; {len(self._problems)} item(s) skipped, first: {self.problems[0]}"
                if self._problems
                else ""
            )
            raise DataError(
                f"{self.root}: no usable items for the {self.name} reader (expected {expected}){detail}"
            )

    def _normalise_index(self, index: int) -> int:
        size = len(self)
        if not -size <= index < size:
            raise IndexError(f"index {index} out of range for {size} items")
        return index % size

    def _sample(
        self,
        image: np.ndarray,
        masks: Sequence[np.ndarray],
        object_ids: Sequence[Any],
        source: Path,
        mask_source: Path | str,
        image_id: str,
        **meta: Any,
    ) -> Sample:
        """Validate masks against the image, drop empty objects, and build the Sample."""
        kept_masks: list[np.ndarray] = []
        kept_ids: list[Any] = []
        kept_meta: dict[str, list[Any]] = {key: [] for key, value in meta.items() if isinstance(value, list)}
        for position, (mask, object_id) in enumerate(zip(masks, object_ids, strict=True)):
            _check_mask_size(mask.shape, image, mask_source)
            mask = np.asarray(mask, dtype=bool)
            if not mask.any():
                self._record(f"{mask_source} object {object_id}", "empty mask, object dropped")
                continue
            kept_masks.append(mask)
            kept_ids.append(object_id)
            for key in kept_meta:
                kept_meta[key].append(meta[key][position])
        if not kept_masks:
            raise DataError(f"{mask_source}: no non-empty object mask for image {source}")
        return Sample(
            image=image,
            masks=kept_masks,
            meta={
                **meta,
                **kept_meta,
                "source": str(source),
                "image_id": image_id,
                "object_ids": kept_ids,
                "dataset": self.name,
            },
        )

    def _select(self, sample: Sample) -> Sample:
        """Apply min_area / objects / max_objects; keeps the original object order."""
        areas = [int(mask.sum()) for mask in sample.masks]
        keep = [i for i, area in enumerate(areas) if area >= self.min_area]
        limit = 1 if self.objects == "largest" else self.max_objects
        if limit is not None and len(keep) > limit:
            largest = sorted(keep, key=lambda i: (-areas[i], i))[:limit]
            keep = sorted(largest)
        if not keep:
            raise DataError(f"{sample.meta['source']}: no object with area >= min_area={self.min_area}")
        if len(keep) == len(sample.masks):
            return sample
        per_object = {key for key, value in sample.meta.items() if isinstance(value, list)}
        meta = {
            key: [value[i] for i in keep] if key in per_object else value
            for key, value in sample.meta.items()
        }
        return Sample(image=sample.image, masks=[sample.masks[i] for i in keep], meta=meta)


def _image_files(folder: Path) -> dict[str, Path]:
    """stem -> file for the image files directly inside `folder` (hidden files and temp files ignored)."""
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES:
            files.setdefault(path.stem, path)
    return files


class RobustSegReader(Reader):
    """The Robust-Seg layout: `clear/`, `masks/*.npy`, one folder per degradation, same file names.

    Images and masks are paired by file stem. A degradation folder `X` reads its masks from `masks_X/`
    when that exists (geometric degradations warp the masks), else from `masks/`.
    """

    name = "robustseg"

    def __init__(
        self,
        root: str | Path,
        *,
        degradation: str = "clean",
        objects: ObjectsOption = "all",
        min_area: int = 0,
        max_objects: int | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__(root, objects=objects, min_area=min_area, max_objects=max_objects, strict=strict)
        self._remember_options(locals())
        if not self.root.is_dir():
            raise DataError(f"{self.root}: robustseg dataset folder not found")
        self.degradation = degradation
        folder = CLEAN_DIR if degradation == "clean" else degradation
        self.image_dir = self.root / folder
        if not self.image_dir.is_dir():
            found = ["clean"] * (self.root / CLEAN_DIR).is_dir() + self.available_degradations()
            raise DataError(
                f"{self.image_dir}: no image folder for degradation {degradation!r} (found: {', '.join(found) or 'none'}; "
                f"expected the Robust-Seg layout {CLEAN_DIR}/, {MASKS_DIR}/, <degradation>/)"
            )
        warped = self.root / masks_dir_for(folder)
        self.mask_dir = warped if degradation != "clean" and warped.is_dir() else self.root / MASKS_DIR
        if not self.mask_dir.is_dir():
            raise DataError(f"{self.mask_dir}: mask folder not found (expected {MASKS_DIR}/<name>.npy files)")
        images = _image_files(self.image_dir)
        masks = {
            path.stem: path for path in sorted(self.mask_dir.glob("*.npy")) if not path.name.startswith(".")
        }
        for stem in sorted(images.keys() - masks.keys()):
            self._discovery_problem(images[stem], f"no mask file {self.mask_dir / (stem + '.npy')}")
        for stem in sorted(masks.keys() - images.keys()):
            self._discovery_problem(masks[stem], f"no image {stem}.* in {self.image_dir}")
        self._items = [(stem, images[stem], masks[stem]) for stem in sorted(images.keys() & masks.keys())]
        self._require_items(len(self._items), f"{folder}/<name>.jpg with {self.mask_dir.name}/<name>.npy")

    def available_degradations(self) -> list[str]:
        """Degraded image folders present (values for `degradation=`), without "clean"."""
        reserved = {CLEAN_DIR, MASKS_DIR}
        return sorted(
            path.name
            for path in self.root.iterdir()
            if path.is_dir()
            and path.name not in reserved
            and not path.name.startswith((f"{MASKS_DIR}_", "."))
            and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir())
        )

    def _load(self, index: int) -> Sample:
        stem, image_path, mask_path = self._items[index]
        image = load_image(image_path)
        try:
            stack = np.load(mask_path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise DataError(f"{mask_path}: cannot read mask array ({err})") from None
        if stack.ndim == 2:
            stack = stack[None]
        if stack.ndim != 3:
            raise DataError(f"{mask_path}: expected masks of shape [N, H, W], got {list(stack.shape)}")
        return self._sample(
            image,
            list(stack > 0),
            list(range(len(stack))),
            source=image_path,
            mask_source=mask_path,
            image_id=stem,
            degradation=self.degradation,
        )


class CocoReader(Reader):
    """COCO or LVIS instance annotations (polygons and RLE); each annotation is an object.

    `path` is the annotation JSON. Image files: with `images=DIR`, `DIR/<file_name>` then
    `DIR/<folder of coco_url>/<file_name>`; without it, next to the JSON, in `images/` beside it,
    then in `../images/` and `../<folder of coco_url>/` (COCO's `annotations/` + `val2017/` layout).
    LVIS entries without `file_name` use the last part of `coco_url`. Crowd annotations are skipped
    unless `include_crowd=True`; images without annotations are not items.
    """

    name = "coco"

    def __init__(
        self,
        root: str | Path,
        *,
        images: str | Path | None = None,
        include_crowd: bool = False,
        objects: ObjectsOption = "all",
        min_area: int = 0,
        max_objects: int | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__(root, objects=objects, min_area=min_area, max_objects=max_objects, strict=strict)
        self._remember_options(locals())
        self.images_dir = Path(images) if images is not None else None
        if self.images_dir is not None and not self.images_dir.is_dir():
            raise DataError(f"{self.images_dir}: images folder not found")
        data = self._read_json(self.root)
        by_image: dict[Any, list[dict[str, Any]]] = {}
        for ann in data["annotations"]:
            if not isinstance(ann, dict) or "image_id" not in ann or "segmentation" not in ann:
                raise DataError(f"{self.root}: annotation without image_id/segmentation: not a COCO file")
            if not _is_id(ann["image_id"]):
                raise DataError(f"{self.root}: annotation {ann.get('id')!r} has image_id {ann['image_id']!r}")
            if ann.get("iscrowd", 0) and not include_crowd:
                continue
            by_image.setdefault(ann["image_id"], []).append(ann)
        for entry in data["images"]:
            if not isinstance(entry, dict) or not _is_id(entry.get("id")):
                raise DataError(f"{self.root}: image entry {entry!r:.80} is not an object with an id")
            anns = by_image.get(entry.get("id"))
            if not anns:
                continue
            name, url_folder = self._file_name(entry)
            path = self._resolve(name, url_folder)
            if path is None:
                self._discovery_problem(name, f"image file not found (annotations {self.root})")
                continue
            self._items.append((Path(name).stem, path, (entry, anns)))
        self._require_items(len(self._items), "images with annotations whose files exist")

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{path}: annotation file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(f"{path}: cannot read JSON ({err})") from None
        if not (
            isinstance(data, dict)
            and isinstance(data.get("images"), list)
            and isinstance(data.get("annotations"), list)
        ):
            raise DataError(
                f"{path}: not a COCO/LVIS annotation file (needs 'images' and 'annotations' lists)"
            )
        return data

    def _file_name(self, entry: dict[str, Any]) -> tuple[str, str]:
        url_path = Path(urlparse(str(entry.get("coco_url", ""))).path)
        name = entry.get("file_name") or url_path.name
        if not name:
            raise DataError(f"{self.root}: image entry {entry.get('id')} has neither file_name nor coco_url")
        return str(name), url_path.parent.name

    def _resolve(self, name: str, url_folder: str) -> Path | None:
        here = self.root.parent
        if self.images_dir is not None:
            candidates = [self.images_dir / name, self.images_dir / url_folder / name]
        else:
            candidates = [here / name, here / "images" / name, here.parent / "images" / name]
            candidates.append(here.parent / url_folder / name)
        return next((path for path in candidates if path.is_file()), None)

    def _load(self, index: int) -> Sample:
        stem, path, (entry, anns) = self._items[index]
        image = load_image(path)
        try:
            height, width = int(entry.get("height", image.shape[0])), int(entry.get("width", image.shape[1]))
        except (TypeError, ValueError, OverflowError):
            raise DataError(
                f"{self.root}: image entry {entry.get('id')!r} has a height/width that is not an integer"
            ) from None
        if (height, width) != image.shape[:2]:
            raise DataError(
                f"{path}: image size {image.shape[1]}x{image.shape[0]} differs from the annotation size "
                f"{width}x{height} in {self.root}"
            )
        masks = []
        for ann in anns:
            try:
                mask = decode_segmentation(ann["segmentation"], height, width)
            except (TypeError, ValueError) as err:
                raise DataError(
                    f"{self.root}: bad segmentation in annotation {ann.get('id')} ({err})"
                ) from None
            masks.append(mask)
        return self._sample(
            image,
            masks,
            [ann.get("id") for ann in anns],
            source=path,
            mask_source=self.root,
            image_id=stem,
            category_ids=[ann.get("category_id") for ann in anns],
        )


def _is_id(value: Any) -> bool:
    """COCO ids are integers (LVIS, ours) or strings (some exports); never bools, floats or containers."""
    return isinstance(value, int | str) and not isinstance(value, bool)


def _objects_from_label_map(array: np.ndarray, mode: str) -> tuple[list[int], list[np.ndarray]]:
    """Split a mask image into objects (see FolderReader for the rule)."""
    if array.ndim == 3:
        if array.shape[2] in (2, 4):  # LA / RGBA: ignore alpha
            array = array[..., :-1]
        if array.shape[2] == 1 or all(
            np.array_equal(array[..., 0], array[..., c]) for c in range(1, array.shape[2])
        ):
            array, mode = array[..., 0], "L"
        else:  # colour-coded labels
            array = (
                (array[..., 0].astype(np.int64) << 16) | (array[..., 1].astype(np.int64) << 8) | array[..., 2]
            )
            mode = "P"
    values = [int(v) for v in np.unique(array) if v != 0]
    if mode in ("L", "1") and 255 in values:  # 0/255 mask, possibly anti-aliased: threshold at half range
        return [1], [array >= 128]
    if mode in ("L", "1") and len(values) <= 1:  # 0/1 mask
        return [1], [array > 0]
    return values, [array == value for value in values]


class FolderReader(Reader):
    """Image + mask file pairs (MSRA10K, ThinObject-5K, DIS): `x.jpg` with `x.png`.

    Folders: `image_dir` / `mask_dir` (relative to the root, or absolute); by default the first pair
    present among images/masks, im/gt, imgs/gts, image/mask, else both in the root. A mask is
    `<image stem><mask_suffix>`. One object per image (0/1 or 0/255 mask; 8-bit masks that contain 255
    are thresholded at 128, so anti-aliased edges count once), unless the mask is a label map (palette
    or 16-bit PNG, colour-coded RGB, or 8-bit values other than 0/255): then one object per label value.
    """

    name = "folder"
    _LAYOUTS = (("images", "masks"), ("im", "gt"), ("imgs", "gts"), ("image", "mask"))

    def __init__(
        self,
        root: str | Path,
        *,
        image_dir: str | None = None,
        mask_dir: str | None = None,
        mask_suffix: str = ".png",
        objects: ObjectsOption = "all",
        min_area: int = 0,
        max_objects: int | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__(root, objects=objects, min_area=min_area, max_objects=max_objects, strict=strict)
        self._remember_options(locals())
        if not self.root.is_dir():
            raise DataError(f"{self.root}: image folder not found")
        if image_dir is None and mask_dir is None:
            layout = next(
                ((i, m) for i, m in self._LAYOUTS if (self.root / i).is_dir() and (self.root / m).is_dir()),
                None,
            )
            image_dir, mask_dir = layout or (".", ".")
        self.image_dir = self.root / (image_dir or ".")
        self.mask_dir = self.root / (mask_dir or image_dir or ".")
        for folder in (self.image_dir, self.mask_dir):
            if not folder.is_dir():
                raise DataError(f"{folder}: folder not found")
        self.mask_suffix = mask_suffix
        same_folder = self.image_dir.resolve() == self.mask_dir.resolve()
        images = {
            stem: path
            for stem, path in _image_files(self.image_dir).items()
            if not (same_folder and path.name.endswith(mask_suffix))
        }
        for stem, image_path in images.items():
            mask_path = self.mask_dir / f"{stem}{mask_suffix}"
            if mask_path.is_file():
                self._items.append((stem, image_path, mask_path))
            else:
                self._discovery_problem(image_path, f"no mask file {mask_path}")
        self._require_items(
            len(self._items), f"images in {self.image_dir} with <stem>{mask_suffix} in {self.mask_dir}"
        )

    def _load(self, index: int) -> Sample:
        stem, image_path, mask_path = self._items[index]
        image = load_image(image_path)
        array, mode = read_label_map(mask_path)
        _check_mask_size(array.shape[:2], image, mask_path)
        labels, masks = _objects_from_label_map(array, mode)
        return self._sample(image, masks, labels, source=image_path, mask_source=mask_path, image_id=stem)


IdFormat = Literal["auto", "cityscapes", "plain", "bdd100k"]


class CityscapesReader(Reader):
    """Instance-id maps (Cityscapes, ACDC, BDD-100K): every instance is an object.

    Id maps are found with `mask_glob` under the root. Formats (`id_format`, "auto" picks by file):
    - cityscapes (`*instanceIds.png`, also ACDC): id >= 1000 is instance k of class id // 1000; ids
      below 1000 are classes without instances (stuff, crowd regions) and are ignored.
    - bdd100k (RGBA bitmasks): R = class, G = attribute bits (1 ignore, 2 crowd), B * 256 + A = instance;
      ignored / crowd instances are skipped unless `include_crowd=True`.
    - plain: an 8-bit or 16-bit id map, each value not in `ignore_ids` is one instance.
    The image of an id map is found with `image_rule` ("auto", or "a=>b;c=>d" replacements applied in order to
    the id map's path relative to the root); "auto" tries Cityscapes (gtFine -> leftImg8bit), ACDC
    (gt -> rgb_anon), BDD-100K (labels/ins_seg/bitmasks -> images/10k, .png -> .jpg), then an image with
    the id map's stem (minus `_instanceIds`) in the same folder.
    """

    name = "cityscapes"
    _RULES: ClassVar[tuple[tuple[tuple[str, str], ...], ...]] = (
        (("_gtFine_instanceIds.png", "_leftImg8bit.png"), ("gtFine", "leftImg8bit")),
        (("_gt_instanceIds.png", "_rgb_anon.png"), ("gt/", "rgb_anon/")),
        (("labels/ins_seg/bitmasks/", "images/10k/"), (".png", ".jpg")),
    )

    def __init__(
        self,
        root: str | Path,
        *,
        mask_glob: str = "**/*instanceIds.png",
        image_rule: str = "auto",
        id_format: IdFormat = "auto",
        ignore_ids: tuple[int, ...] = (0,),
        include_crowd: bool = False,
        objects: ObjectsOption = "all",
        min_area: int = 0,
        max_objects: int | None = None,
        strict: bool = False,
    ) -> None:
        super().__init__(root, objects=objects, min_area=min_area, max_objects=max_objects, strict=strict)
        self._remember_options(locals())
        if id_format not in typing.get_args(IdFormat):
            raise ConfigError(f"id_format must be one of {typing.get_args(IdFormat)}, got {id_format!r}")
        if not self.root.is_dir():
            raise DataError(f"{self.root}: dataset folder not found")
        self.id_format = id_format
        self.ignore_ids = tuple(int(v) for v in ignore_ids)
        self.include_crowd = include_crowd
        rules = self._RULES if image_rule == "auto" else (self._parse_rule(image_rule),)
        for mask_path in sorted(self.root.glob(mask_glob)):
            if not mask_path.is_file() or mask_path.name.startswith("."):
                continue
            image_path = self._image_for(mask_path, rules, generic=image_rule == "auto")
            if image_path is None:
                self._discovery_problem(
                    mask_path, f"no image found for this id map (image_rule={image_rule!r})"
                )
                continue
            stem = mask_path.stem.removesuffix("_instanceIds").removesuffix("_gtFine").removesuffix("_gt")
            self._items.append((stem, image_path, mask_path))
        self._require_items(len(self._items), f"id maps matching {mask_glob!r} with their images")

    @staticmethod
    def _parse_rule(rule: str) -> tuple[tuple[str, str], ...]:
        pairs = []
        for part in filter(None, rule.split(";")):
            if "=>" not in part:
                raise ConfigError(f"image_rule {rule!r}: each part must look like 'old=>new'")
            old, new = part.split("=>", 1)
            pairs.append((old, new))
        if not pairs:
            raise ConfigError(f"image_rule {rule!r} has no 'old=>new' part")
        return tuple(pairs)

    def _image_for(
        self, mask_path: Path, rules: Sequence[tuple[tuple[str, str], ...]], generic: bool
    ) -> Path | None:
        relative = mask_path.relative_to(self.root).as_posix()
        for rule in rules:
            if not all(old in relative for old, _ in rule):
                continue
            candidate = relative
            for old, new in rule:
                candidate = candidate.replace(old, new)
            if candidate != relative and (self.root / candidate).is_file():
                return self.root / candidate
        if generic:
            stem = mask_path.stem.removesuffix("_instanceIds")
            for suffix in IMAGE_SUFFIXES:
                candidate = mask_path.with_name(stem + suffix)
                if candidate != mask_path and candidate.is_file():
                    return candidate
        return None

    def _load(self, index: int) -> Sample:
        stem, image_path, mask_path = self._items[index]
        image = load_image(image_path)
        array, _mode = read_label_map(mask_path)
        _check_mask_size(array.shape[:2], image, mask_path)
        fmt = self.id_format
        if fmt == "auto":
            fmt = "bdd100k" if array.ndim == 3 and array.shape[2] == 4 else "plain"
            fmt = "cityscapes" if "instanceIds" in mask_path.name else fmt
        if fmt == "bdd100k":
            if array.ndim != 3 or array.shape[2] != 4:
                raise DataError(
                    f"{mask_path}: bdd100k bitmasks must be RGBA PNGs, got shape {list(array.shape)}"
                )
            bitmask = array.astype(np.int64)
            ids = (bitmask[..., 2] << 8) | bitmask[..., 3]
            skip = bitmask[..., 1] & 3 if not self.include_crowd else np.zeros_like(ids)
            instance_ids = [int(v) for v in np.unique(ids[(ids > 0) & (skip == 0)])]
            classes = [int(bitmask[..., 0][ids == v][0]) for v in instance_ids]
        else:
            if array.ndim != 2:
                raise DataError(
                    f"{mask_path}: expected a single-channel id map, got shape {list(array.shape)}"
                )
            ids = array.astype(np.int64)
            if fmt == "cityscapes":
                instance_ids = [int(v) for v in np.unique(ids) if v >= 1000]
                classes = [v // 1000 for v in instance_ids]
            else:
                instance_ids = [int(v) for v in np.unique(ids) if v not in self.ignore_ids]
                classes = list(instance_ids)
        masks = [ids == v for v in instance_ids]
        return self._sample(
            image,
            masks,
            instance_ids,
            source=image_path,
            mask_source=mask_path,
            image_id=stem,
            category_ids=classes,
        )


READERS: dict[str, type[Reader]] = {
    reader.name: reader for reader in (RobustSegReader, CocoReader, FolderReader, CityscapesReader)
}


def open_dataset(spec: str, **options: Any) -> Reader:
    """Open `<reader>:<path>[?option=value&...]` (the `--data` syntax of every command).

    Options in the spec (e.g. `folder:/data/DIS?image_dir=im&mask_dir=gt`, `robustseg:/d?degradation=fog`)
    override keyword `options`; values are converted to the option's type.
    """
    reader_name, sep, rest = spec.partition(":")
    if not sep or reader_name not in READERS:
        raise DataError(
            f"unknown dataset {spec!r}: expected <reader>:<path> with reader one of {', '.join(READERS)}"
        )
    path, _, query = rest.partition("?")
    if not path:
        raise DataError(f"dataset {spec!r}: missing path after '{reader_name}:'")
    reader_cls = READERS[reader_name]
    hints = _option_types(reader_cls)
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key not in hints:
            raise ConfigError(
                f"dataset {spec!r}: unknown option {key!r} for {reader_name} (options: {', '.join(hints)})"
            )
        options[key] = _coerce(value, hints[key], f"dataset {spec!r}: option {key}")
    unknown = set(options) - set(hints)
    if unknown:
        raise ConfigError(
            f"{reader_name} reader: unknown option(s) {sorted(unknown)} (options: {', '.join(hints)})"
        )
    return reader_cls(path, **options)


def _option_types(reader_cls: type[Reader]) -> dict[str, Any]:
    hints = typing.get_type_hints(reader_cls.__init__, globalns=globals())
    return {
        name: hints[name]
        for name in inspect.signature(reader_cls.__init__).parameters
        if name not in ("self", "root")
    }


def _coerce(value: str, hint: Any, where: str) -> Any:
    """Convert a query-string value to the option's annotated type."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value.lower() in ("", "none", "null") and type(None) in args:
            return None
        hint = next(arg for arg in args if arg is not type(None))
        args, origin = typing.get_args(hint), typing.get_origin(hint)
    try:
        if hint is bool:
            lowered = value.lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(f"expected true/false, got {value!r}")
            return lowered in ("1", "true", "yes")
        if hint is int:
            return int(value)
        if origin is tuple:
            return tuple(int(v) for v in value.split(",") if v)
        if origin is Literal and value not in args:
            raise ValueError(f"expected one of {args}, got {value!r}")
    except ValueError as err:
        raise ConfigError(f"{where}: {err}") from None
    return value
