"""Deployment: GaRA-SAM exported to ONNX and run without PyTorch.

`OnnxPredictor` (garasam.deploy.runtime; `ExportedPredictor` is the same class) needs only
onnxruntime, numpy and Pillow for ONNX folders: importing this package never imports torch (a
`--format pt2` folder needs torch to run). The exporter, which needs torch, is `garasam.deploy.export`.
"""

from garasam.deploy.runtime import ExportedPredictor, OnnxPredictor

__all__ = ["ExportedPredictor", "OnnxPredictor"]
