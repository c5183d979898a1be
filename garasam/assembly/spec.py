"""What a model is made of, as the command line and the Python API name it (no torch import, so that
commands can parse their flags into it before anything heavy loads)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelSpec:
    """What a model is made of: a backbone (model type and checkpoint; None: decided by the caller's
    defaults, see `resolve_model_type`) and an adapter folder (None: none)."""

    model_type: str | None = None
    checkpoint: str | os.PathLike | None = None
    adapters: Path | None = None
