"""A folder of images beside a folder of label maps (`folder:PATH`), one object per label."""

from __future__ import annotations

from pathlib import Path

from garasam.data.images import load_image, objects_from_label_map, read_label_map
from garasam.data.readers.base import ObjectsOption, Reader, Sample, check_mask_size, image_files
from garasam.errors import DataError


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
            for stem, path in image_files(self.image_dir).items()
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
        check_mask_size(array.shape[:2], image, mask_path)
        labels, masks = objects_from_label_map(array, mode)
        return self._sample(image, masks, labels, source=image_path, mask_source=mask_path, image_id=stem)
