"""Fixtures for data tests: small image/mask files and the official SAM resize for comparison."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def official_transforms(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """`segment_anything/utils/transforms.py`, loaded on its own with a stand-in `torchvision`.

    torchvision is not installed and `import segment_anything` pulls it in (automatic mask generator),
    so the file is loaded directly. The stand-in reproduces what torchvision does on a PIL image:
    `to_pil_image` wraps the uint8 array, `resize(img, (h, w))` calls `img.resize((w, h), BILINEAR)`.
    It lives in sys.modules only for this test (monkeypatch), so other test folders are unaffected.
    """
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.to_pil_image = Image.fromarray
    functional.resize = lambda img, size: img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    for name, module in {
        "torchvision": types.ModuleType("torchvision"),
        "torchvision.transforms": types.ModuleType("torchvision.transforms"),
        "torchvision.transforms.functional": functional,
    }.items():
        monkeypatch.setitem(sys.modules, name, module)
    package = importlib.util.find_spec("segment_anything")
    assert package is not None and package.submodule_search_locations
    path = Path(package.submodule_search_locations[0]) / "utils" / "transforms.py"
    spec = importlib.util.spec_from_file_location("_official_sam_transforms", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_image(path: Path, array: np.ndarray, **save_kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **save_kwargs)
    return path


def random_image(height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def box_mask(height: int, width: int, top: int, left: int, bottom: int, right: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    mask[top:bottom, left:right] = True
    return mask
