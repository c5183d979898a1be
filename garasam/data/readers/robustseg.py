"""The Robust-Seg layout (RobustSAM): `clear/`, `masks/`, one folder per degradation; written by
`garasam synth` / `garasam corrupt` / `garasam prepare`, read by `robustseg:PATH`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from garasam.data.images import IMAGE_SUFFIXES, load_image
from garasam.data.readers.base import ObjectsOption, Reader, Sample, image_files
from garasam.errors import DataError

# The Robust-Seg layout (RobustSAM): written by `garasam synth` / `garasam corrupt`, read by `robustseg`.
CLEAN_DIR = "clear"


MASKS_DIR = "masks"


def masks_dir_for(folder: str) -> str:
    """Mask folder of a geometric degradation folder (its masks are warped with the image)."""
    return f"{MASKS_DIR}_{folder}"


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
        images = image_files(self.image_dir)
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
