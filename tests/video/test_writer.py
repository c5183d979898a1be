"""Per-frame object-id PNGs keep every id (DAVIS's indexed encoding) and refuse ids a PNG cannot hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from garasam.data.labels import label_map, write_label_png
from garasam.errors import ConfigError
from garasam.video.clips import read_label_png


def test_ids_survive_the_round_trip(tmp_path: Path) -> None:
    labels = (np.arange(32 * 40).reshape(32, 40) % 60).astype(np.uint8)
    write_label_png(tmp_path / "ids.png", labels)
    assert np.array_equal(read_label_png(tmp_path / "ids.png"), labels)


def test_later_objects_cover_earlier_ones_and_bad_ids_are_refused() -> None:
    first, second = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    first[:2], second[1:3] = True, True
    assert label_map({1: first, 2: second}, (4, 4))[:, 0].tolist() == [1, 2, 2, 0]
    for bad in (0, 255, 300):
        with pytest.raises(ConfigError, match="ids 1 to 254"):
            label_map({bad: first}, (4, 4))
