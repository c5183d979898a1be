"""`garasam prepare`: the paper's datasets from their official downloads, offline, checked.

garasam prepare coco2017 --src annotations_trainval2017.zip val2017.zip --out data/coco

The sources are the archives (or unpacked folders) a user downloaded; nothing is downloaded. Each
image is written atomically with its masks before it, so an interrupted run is resumed by running
the same command again; `prepare.json` records the sources, what was written per split, what was
skipped and why, and the reader spec of each split (docs/data.md, "Preparing the paper's datasets").
"""

from garasam.data.prepare.datasets import DATASETS as IMAGE_DATASETS
from garasam.data.prepare.datasets import DatasetSpec
from garasam.data.prepare.video import VIDEO_DATASETS

# every dataset `garasam prepare` knows: the image ones, then the video ones
DATASETS = {**IMAGE_DATASETS, **VIDEO_DATASETS}

__all__ = ["DATASETS", "DatasetSpec"]
