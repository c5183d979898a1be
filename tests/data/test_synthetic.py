"""Synthetic scenes: determinism, exact occlusion-aware masks, three disjoint families, the writer."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pytest
import skimage.data

from garasam.cli import main
from garasam.data.readers import RobustSegReader
from garasam.data.synthetic import FAMILY_SPECS, generate_scene, write_scenes
from garasam.errors import ConfigError
from tests.data.conftest import box_mask


def test_scene_is_deterministic_and_seed_dependent() -> None:
    a, b, c = generate_scene(3), generate_scene(3), generate_scene(4)
    np.testing.assert_array_equal(a.image, b.image)
    assert len(a.masks) == len(b.masks) and all(
        np.array_equal(x, y) for x, y in zip(a.masks, b.masks, strict=True)
    )
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(generate_scene(3, family="target").image, a.image)
    train, test = (
        generate_scene(3, family="target", split="train"),
        generate_scene(3, family="target", split="test"),
    )
    assert not np.array_equal(train.image, test.image)


def test_source_family_is_the_tiny_sams_pretraining_generator() -> None:
    """The bundled tiny SAM was pretrained on the former `train` split; `source` must stay bit-identical
    to it, or the claim that the tiny SAM saw only the source family breaks. (Digest of that generator's
    output, taken before the families were introduced.)"""
    digest = hashlib.sha256()
    for seed, size in [(0, (256, 256)), (1, (192, 256)), (30000123, (256, 160)), (7, (256, 256))]:
        scene = generate_scene(seed, size=size, family="source")
        digest.update(scene.image.tobytes())
        for mask in scene.masks:
            digest.update(np.packbits(mask).tobytes())
    assert digest.hexdigest() == "8e46f9413f18ae5919c776821f898c36a984b68b5c535626646059d1768f5740"


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
        assert sample.meta["image_id"] == f"source_train_{seed:07d}"


def test_masks_are_visible_regions_after_occlusion(monkeypatch: pytest.MonkeyPatch) -> None:
    size = 64
    hidden = box_mask(size, size, 12, 12, 16, 16)  # painted first, then completely covered: dropped
    below = box_mask(size, size, 5, 5, 40, 40)
    above = box_mask(size, size, 30, 30, 60, 60)
    queue = [hidden, below, above]
    monkeypatch.setitem(FAMILY_SPECS["source"].shapes, "fixed", lambda *args: queue.pop(0))
    for name in [n for n in FAMILY_SPECS["source"].shapes if n != "fixed"]:
        monkeypatch.delitem(FAMILY_SPECS["source"].shapes, name)
    sample = generate_scene(0, size=(size, size), num_objects=(3, 3))
    assert sample.meta["object_ids"] == [1, 2]
    np.testing.assert_array_equal(sample.masks[0], below & ~above)
    np.testing.assert_array_equal(sample.masks[1], above)


@pytest.mark.parametrize("family", ["source", "target", "zero_shot"])
def test_families_are_distinct(family: str) -> None:
    spec = FAMILY_SPECS[family]
    others = [s for name, s in FAMILY_SPECS.items() if name != family]
    assert not set(spec.backgrounds) & {b for s in others for b in s.backgrounds}  # no shared photograph
    assert all(set(spec.shapes) != set(s.shapes) or spec.textures != s.textures for s in others)
    data_dir = Path(skimage.data.__file__).parent
    for name in spec.backgrounds:
        assert (data_dir / name).is_file(), f"{name} is not bundled in the scikit-image wheel"
    scenes = [generate_scene(seed, family=family, split=spec.splits[-1]) for seed in range(30)]
    kinds = {s.split("/")[0] for scene in scenes for s in scene.meta["shapes"]}
    assert kinds <= set(spec.shapes) and len(kinds) >= 3
    backgrounds = {scene.meta["background"] for scene in scenes}
    assert backgrounds <= set(spec.backgrounds) and len(backgrounds) >= 4
    counts = [len(scene.masks) for scene in scenes]
    assert max(counts) <= spec.num_objects[1] * (2 if spec.nested else 1)


def test_family_mask_conventions() -> None:
    """target: holes are background (a ring's mask has a hole); zero_shot: decals stay in the mask and
    nested objects get their own mask, carved out of their host."""
    scenes = [generate_scene(seed, family="target", split="train") for seed in range(20)]
    holed = [
        m
        for scene in scenes
        for m, kind in zip(scene.masks, scene.meta["shapes"], strict=True)
        if kind.startswith(("ring", "perforated"))
    ]
    assert holed and any(_has_hole(m) for m in holed)
    shots = [generate_scene(seed, family="zero_shot") for seed in range(20)]
    assert any("+decal" in kind for scene in shots for kind in scene.meta["shapes"])
    assert max(len(scene.masks) for scene in shots) > FAMILY_SPECS["zero_shot"].num_objects[0]


def _has_hole(mask: np.ndarray) -> bool:
    import scipy.ndimage as ndi

    return bool((ndi.binary_fill_holes(mask) & ~mask).sum() > 0)


def test_scene_generation_is_fast() -> None:
    generate_scene(0)
    start = time.perf_counter()
    for seed in range(20):
        generate_scene(seed)
    assert (time.perf_counter() - start) / 20 < 0.05  # a few ms on a laptop; generous for a busy CI


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="split"):
        generate_scene(0, split="val")
    with pytest.raises(ConfigError, match="split"):
        generate_scene(0, family="zero_shot", split="train")  # zero-shot is test only
    with pytest.raises(ConfigError, match="family"):
        generate_scene(0, family="coco")
    with pytest.raises(ConfigError, match="num_objects"):
        generate_scene(0, num_objects=(3, 2))


def test_write_scenes_layout_and_resume(tmp_path: Path) -> None:
    stats = write_scenes(tmp_path, num=4, seed=10, size=(40, 40))
    assert stats == (4, 0)
    names = sorted(p.name for p in (tmp_path / "clear").iterdir())
    assert names == [f"source_train_{s:07d}.jpg" for s in range(10, 14)]
    reader = RobustSegReader(tmp_path)
    sample = reader[0]
    scene = generate_scene(10, size=(40, 40))
    assert all(np.array_equal(a, b) for a, b in zip(sample.masks, scene.masks, strict=True))
    assert np.abs(sample.image.astype(int) - scene.image).mean() < 6  # JPEG quality 95
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*.*")}
    (tmp_path / "clear" / "source_train_0000011.jpg").unlink()
    assert write_scenes(tmp_path, num=6, seed=10, size=(40, 40)) == (3, 3)
    for path, mtime in mtimes.items():
        if path.name != "source_train_0000011.jpg":  # only the missing file was written
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
    stems = sorted(p.stem for p in (tmp_path / "masks").iterdir())
    assert stems == ["target_test_0000005", "target_test_0000006"]  # target is the default family
    assert (
        main(["synth", "--out", str(tmp_path / "z"), "--num", "1", "--size", "32", "--family", "zero_shot"])
        == 0
    )
    assert [p.stem for p in (tmp_path / "z" / "masks").iterdir()] == ["zero_shot_test_0000000"]
    assert main(["synth", "--out", str(tmp_path), "--num", "0"]) == 2
    assert (
        main(["synth", "--out", str(tmp_path), "--num", "1", "--family", "zero_shot", "--split", "train"])
        == 2
    )
