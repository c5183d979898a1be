"""Building SAM (transformers' `SamModel`) and reading or writing its checkpoints."""

from garasam.models.build import build_sam, sam_model_registry
from garasam.models.checkpoint import identify_checkpoint, save_sam
from garasam.models.registry import MODEL_TYPES, sam_config

__all__ = ["MODEL_TYPES", "build_sam", "identify_checkpoint", "sam_config", "sam_model_registry", "save_sam"]
