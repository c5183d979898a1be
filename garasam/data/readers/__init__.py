"""Dataset readers: every supported layout becomes a lazy sequence of `Sample`s.

Training, evaluation, `garasam corrupt` and prediction all read data through `open_dataset("reader:path")`,
so a dataset problem (missing file, truncated image, mask of the wrong size) is handled the same way
everywhere: with `strict=False` the item is skipped and recorded in `reader.problems`; with `strict=True`
a `DataError` naming the file is raised. One module per layout (`robustseg`, `coco`, `folder`,
`cityscapes`) on a shared `base`, and the `factory` that opens them by name.
"""

from garasam.data.readers.base import Problem, Reader, Sample
from garasam.data.readers.cityscapes import CityscapesReader
from garasam.data.readers.coco import CocoReader
from garasam.data.readers.factory import READERS, open_dataset
from garasam.data.readers.folder import FolderReader
from garasam.data.readers.robustseg import CLEAN_DIR, MASKS_DIR, RobustSegReader, masks_dir_for

__all__ = [
    "CLEAN_DIR",
    "MASKS_DIR",
    "READERS",
    "CityscapesReader",
    "CocoReader",
    "FolderReader",
    "Problem",
    "Reader",
    "RobustSegReader",
    "Sample",
    "masks_dir_for",
    "open_dataset",
]
