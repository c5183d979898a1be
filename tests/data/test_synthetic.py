"""Synthetic scenes: determinism, exact occlusion-aware masks, disjoint train/test families, the writer."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import skimage.data

from garasam.cli import main
from garasam.data.readers import RobustSegReader
from garasam.data.synthetic import BACKGROUNDS, SHAPES, generate_scene, write_scenes
from garasam.errors import ConfigError
from tests.data.conftest import box_mask


def test_scene_is_deterministic_and_seed_dependent() -> None:
    a, b, c = generate_scene(3), generate_scene(3), generate_scene(4)
    np.testing.assert_array_equal(a.image, b.image)
    assert len(a.masks) == len(b.masks) and all(
        np.array_equal(x, y) for x, y in zip(a.masks, b.masks, strict=True)
    )
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(generate_scene(3, split="test").image, a.image)


def test_scene_format_and_visible_masks() -> None:
    for seed in range(20):
        sample = generate_scene(seed, size=(48, 64), num_objects=(3, 5))
        assert sample.image.shape == (48, 64, 3) and sample.image.dtype == np.uint8
        assert 1 <= len(sample.masks) <= 5
        stack = np.stack(sample.masks)
        assert stack.dtype == bool and stack.shape[1:] == (48, 64)
        assert stack.sum(axis=(1, 2)).min() >= 16  # occluded-away objects were dropped
        assert stack.sum(axis=0).max() == 1  # visible regions never overlap
        assert len(sample.meta["object_ids"]) == len(sample.masks) == len(sample.meta["shapes"])
        assert sample.meta["image_id"] == f"train_{seed:07d}"


def test_masks_are_visible_regions_after_occlusion(monkeypatch: pytest.MonkeyPatch) -> None:
    size = 64
    hidden = box_mask(size, size, 12, 12, 16, 16)  # painted first, then completely covered: dropped
    below = box_mask(size, size, 5, 5, 40, 40)
    above = box_mask(size, size, 30, 30, 60, 60)
    queue = [hidden, below, above]
    monkeypatch.setitem(SHAPES, "train", {"fixed": lambda *args: queue.pop(0)})
    sample = generate_scene(0, size=(size, size), num_objects=(3, 3))
    assert sample.meta["object_ids"] == [1, 2]
    np.testing.assert_array_equal(sample.masks[0], below & ~above)
    np.testing.assert_array_equal(sample.masks[1], above)


def test_train_and_test_use_different_families() -> None:
    assert not set(SHAPES["train"]) & set(SHAPES["test"])
    assert not set(BACKGROUNDS["train"]) & set(BACKGROUNDS["test"])
    data_dir = Path(skimage.data.__file__).parent
    for name in (*BACKGROUNDS["train"], *BACKGROUNDS["test"]):
        assert (data_dir / name).is_file(), f"{name} is not bundled in the scikit-image wheel"
    kinds = {s.split("/")[0] for seed in range(30) for s in generate_scene(seed, split="test").meta["shapes"]}
    assert kinds <= set(SHAPES["test"]) and len(kinds) >= 3
    backgrounds = {generate_scene(seed, split="test").meta["background"] for seed in range(30)}
    assert backgrounds <= set(BACKGROUNDS["test"]) and len(backgrounds) >= 4


def test_scene_generation_is_fast() -> None:
    generate_scene(0)
    start = time.perf_counter()
    for seed in range(20):
        generate_scene(seed)
    assert (time.perf_counter() - start) / 20 < 0.05  # a few ms on a laptop; generous for a busy CI


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="split"):
        generate_scene(0, split="val")
    with pytest.raises(ConfigError, match="num_objects"):
        generate_scene(0, num_objects=(3, 2))


def test_write_scenes_layout_and_resume(tmp_path: Path) -> None:
    stats = write_scenes(tmp_path, num=4, seed=10, size=(40, 40))
    assert stats == (4, 0)
    names = sorted(p.name for p in (tmp_path / "clear").iterdir())
    assert names == [f"train_{s:07d}.jpg" for s in range(10, 14)]
    reader = RobustSegReader(tmp_path)
    sample = reader[0]
    scene = generate_scene(10, size=(40, 40))
    assert all(np.array_equal(a, b) for a, b in zip(sample.masks, scene.masks, strict=True))
    assert np.abs(sample.image.astype(int) - scene.image).mean() < 6  # JPEG quality 95
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.*")}
    (tmp_path / "clear" / "train_0000011.jpg").unlink()
    assert write_scenes(tmp_path, num=6, seed=10, size=(40, 40)) == (3, 3)
    for path, mtime in mtimes.items():
        if path.name != "train_0000011.jpg":  # only the missing file was written
            assert path.stat().st_mtime_ns == mtime
    assert not list(tmp_path.rglob(".*"))  # no temp files left


def test_synth_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            ["synth", "--out", str(tmp_path), "--num", "2", "--size", "32", "--split", "test", "--seed", "5"]
        )
        == 0
    )
    assert "2 scene(s) written, 0 already present" in capsys.readouterr().out
    assert sorted(p.stem for p in (tmp_path / "masks").iterdir()) == ["test_0000005", "test_0000006"]
    assert main(["synth", "--out", str(tmp_path), "--num", "0"]) == 2
