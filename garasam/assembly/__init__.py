"""A SAM assembled with its checkpoint, adapters and fast path (`build`), the one door through which
images are encoded and the gates read (`encoding`), and adapted models as Hugging Face style folders
(`pretrained`). Every command and the Python API build their models here.

Imported lazily: `ModelSpec` (`spec`) is cheap, the rest loads torch and transformers.
"""

from __future__ import annotations

from garasam.lazy import lazy_exports

_EXPORTS = {
    "ModelSpec": "garasam.assembly.spec",
    "accelerate": "garasam.assembly.build",
    "build_model": "garasam.assembly.build",
    "build_models": "garasam.assembly.build",
    "resolve_model_type": "garasam.assembly.build",
    "Gates": "garasam.assembly.encoding",
    "encode": "garasam.assembly.encoding",
    "release_valid_area": "garasam.assembly.encoding",
    "read_gates": "garasam.assembly.encoding",
    "GaraSam": "garasam.assembly.pretrained",
}

__all__ = list(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
