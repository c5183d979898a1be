"""Prediction: a SamPredictor-compatible predictor, automatic masks, `garasam predict` and `garasam serve`."""

from garasam.predict.automatic import AutomaticMaskGenerator
from garasam.predict.predictor import GaraSamPredictor, from_pretrained, gate_table
from garasam.predict.prompts import UserPrompt, segment

__all__ = [
    "AutomaticMaskGenerator",
    "GaraSamPredictor",
    "UserPrompt",
    "from_pretrained",
    "gate_table",
    "segment",
]
