"""Shared test settings: CPU only, small thread count, deterministic seeds."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _import_official_sam_without_torchvision() -> None:
    """Import the official `segment_anything` package (a test-only reference) without torchvision.

    `segment_anything/__init__.py` imports its automatic mask generator and transforms, which import
    torchvision; PyPI's torchvision does not import beside our CPU torch build. The tests use only
    the official model classes, which never call the torchvision functions, so a stand-in that
    raises if called is present while the package imports, then removed again (transformers probes
    for torchvision and must keep seeing that it is absent).
    """
    import importlib.util
    import sys
    import types

    if (
        importlib.util.find_spec("torchvision") is not None
        or importlib.util.find_spec("segment_anything") is None
    ):
        return

    def _unavailable(*_args, **_kwargs):
        raise RuntimeError("torchvision stand-in: not available in the garasam test environment")

    names = (
        "torchvision",
        "torchvision.ops",
        "torchvision.ops.boxes",
        "torchvision.transforms",
        "torchvision.transforms.functional",
    )
    modules = {name: types.ModuleType(name) for name in names}
    for attr in ("batched_nms", "box_area"):
        setattr(modules["torchvision.ops.boxes"], attr, _unavailable)
    for attr in ("resize", "to_pil_image"):
        setattr(modules["torchvision.transforms.functional"], attr, _unavailable)
    sys.modules.update(modules)
    try:
        import segment_anything  # noqa: F401
    finally:
        for name in names:
            sys.modules.pop(name, None)


_import_official_sam_without_torchvision()
