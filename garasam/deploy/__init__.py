"""Deployment: GaRA-SAM exported to ONNX and run without PyTorch.

`OnnxPredictor` (garasam.deploy.runtime) needs only onnxruntime, numpy and Pillow: importing this
package never imports torch. The exporter, which does, is `garasam.deploy.export`.
"""

from garasam.deploy.runtime import OnnxPredictor

__all__ = ["OnnxPredictor"]
