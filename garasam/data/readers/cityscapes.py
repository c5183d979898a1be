"""Id maps in the Cityscapes / ACDC / BDD100K style (`cityscapes:PATH`): instances from id maps found
under the root, each paired with its image by a rule."""

from __future__ import annotations

import typing
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from garasam.data.images import IMAGE_SUFFIXES, load_image, read_label_map
from garasam.data.readers.base import ObjectsOption, Reader, Sample, check_mask_size
from garasam.errors import ConfigError, DataError

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
        check_mask_size(array.shape[:2], image, mask_path)
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
