"""COCO instance annotations (`coco:annotations.json`): one sample per image, one mask per instance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from garasam.data.coco_masks import decode_segmentation
from garasam.data.images import load_image
from garasam.data.readers.base import ObjectsOption, Reader, Sample
from garasam.errors import DataError


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
