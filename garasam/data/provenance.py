"""What adapters were trained on, so that an evaluation can tell held-out images from training images.

`garasam train` writes `training_data.json` beside the adapters it exports: the `reader:path` specs
and one short fingerprint per training image (sha1 of its file name and size, no pixels read: a copy
of the image in another folder still matches). `garasam eval` fingerprints its own images the same way
and warns when some were trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from garasam.io import atomic_write_text

TRAINING_DATA_NAME = "training_data.json"
_DIGITS = 12  # 48 bits: chance collisions stay negligible for millions of images


def fingerprint(path: Path) -> str | None:
    """Name and size of an image file as a short hash; None if the file cannot be read."""
    try:
        size = os.stat(path).st_size
    except OSError:
        return None
    return hashlib.sha1(f"{path.name}\0{size}".encode()).hexdigest()[:_DIGITS]


def fingerprints(paths: Iterable[Path]) -> set[str]:
    return {f for f in (fingerprint(p) for p in paths) if f is not None}


def write_training_data(folder: Path, specs: Sequence[str], paths: Iterable[Path]) -> None:
    prints = sorted(fingerprints(paths))
    record = {"specs": list(specs), "images": len(prints), "fingerprints": prints}
    atomic_write_text(folder / TRAINING_DATA_NAME, json.dumps(record) + "\n")


def read_training_data(folder: Path) -> dict[str, Any] | None:
    """The record of an adapter folder, or None (not written by garasam train, or unreadable)."""
    try:
        record = json.loads((folder / TRAINING_DATA_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("fingerprints"), list):
        return None
    return record


def overlap(record: dict[str, Any], paths: Iterable[Path]) -> int:
    """How many of `paths` the record's training images include."""
    trained = set(record["fingerprints"])
    return sum(1 for f in (fingerprint(p) for p in paths) if f in trained)
