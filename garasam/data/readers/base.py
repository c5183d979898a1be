"""What every reader shares: the `Sample` it yields, the `Problem`s it records, and the `Reader` base
class that turns one bad item into a skipped, recorded item (or a `DataError` when strict)."""

from __future__ import annotations

import abc
import inspect
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from garasam.data.images import IMAGE_SUFFIXES
from garasam.errors import ConfigError, DataError


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


ObjectsOption = Literal["all", "largest"]


def check_mask_size(mask_shape: tuple[int, ...], image: np.ndarray, mask_source: Path | str) -> None:
    """A mask must cover its image pixel for pixel; a DataError names the mask file otherwise."""
    if tuple(mask_shape[-2:]) != image.shape[:2]:
        raise DataError(
            f"{mask_source}: mask size {mask_shape[-1]}x{mask_shape[-2]} differs from "
            f"image size {image.shape[1]}x{image.shape[0]}"
        )


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
            check_mask_size(mask.shape, image, mask_source)
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


def image_files(folder: Path) -> dict[str, Path]:
    """stem -> file for the image files directly inside `folder` (hidden files and temp files ignored)."""
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES:
            files.setdefault(path.stem, path)
    return files
