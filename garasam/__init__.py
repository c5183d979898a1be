"""GaRA-SAM: gated-rank adaptation for a robust Segment Anything Model.

The public API is imported lazily so that `import garasam` (and the CLI) start fast.
"""

from __future__ import annotations

from garasam.lazy import lazy_exports
from garasam.version import __version__

_EXPORTS = {
    "build_sam": "garasam.models",
    "save_sam": "garasam.models",
    "GaRAConfig": "garasam.adapters",
    "LoRAConfig": "garasam.adapters",
    "MoELoRAConfig": "garasam.adapters",
    "inject_adapters": "garasam.adapters",
    "save_adapters": "garasam.adapters",
    "load_adapters": "garasam.adapters",
    "trainable_parameters": "garasam.adapters",
    "gate_summary": "garasam.adapters",
    "GaraSamPredictor": "garasam.predict",
    "from_pretrained": "garasam.predict",
    "AutomaticMaskGenerator": "garasam.predict",
    "GaraSam": "garasam.assembly",
    "VideoPredictor": "garasam.video",
    # segment_anything's names (docs/predict.md, "Coming from segment_anything")
    "sam_model_registry": "garasam.models",
    "SamPredictor": "garasam.predict",
    "SamAutomaticMaskGenerator": "garasam.predict",
}

__all__ = ["__version__", *_EXPORTS]


__getattr__ = lazy_exports(__name__, _EXPORTS)
