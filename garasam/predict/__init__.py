"""Prediction: a SamPredictor-compatible predictor, automatic masks, `garasam predict` and `garasam serve`."""

from garasam.predict.automatic import AutomaticMaskGenerator
from garasam.predict.predictor import GaraSamPredictor, from_pretrained, gate_table
from garasam.predict.prompts import UserPrompt, segment

# segment_anything's names, so that its code runs with only the import line changed
SamPredictor = GaraSamPredictor
SamAutomaticMaskGenerator = AutomaticMaskGenerator

__all__ = [
    "AutomaticMaskGenerator",
    "GaraSamPredictor",
    "SamAutomaticMaskGenerator",
    "SamPredictor",
    "UserPrompt",
    "from_pretrained",
    "gate_table",
    "segment",
]
