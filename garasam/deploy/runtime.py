"""`OnnxPredictor` (= `ExportedPredictor`): an exported GaRA-SAM folder run without PyTorch.

The SamPredictor API (`set_image`, `predict` with the same arguments and return order) over the
folder `garasam export --format onnx` writes: `encoder.onnx` (image encoder, adapters and hard gates
included; the gates' decisions are outputs), `decoder.onnx` (prompt encoder and mask decoder) and
`model.json` (geometry, names, provenance). Needs onnxruntime, numpy and Pillow only; a folder of
`--format pt2` (torch.export programs of the same graphs) runs the same way with torch installed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from garasam import arrays
from garasam.deploy import geometry
from garasam.errors import CheckpointError

MODEL_JSON = "model.json"
PRECISIONS = ("fp32", "fp16", "int8")
FORMAT_VERSION = 1


class _OnnxGraph:
    """One ONNX file in an ONNX Runtime session: `run(feeds)` -> the outputs, as NumPy arrays."""

    def __init__(self, path: Path, providers: list[str] | None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # warnings about unused initialisers are not the user's concern
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=providers or ["CPUExecutionProvider"]
        )

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, feeds)


class _Pt2Graph:
    """One torch.export program (needs torch): `run(feeds)` -> the outputs, as NumPy arrays."""

    def __init__(self, path: Path, inputs: list[str]) -> None:
        import torch

        self.torch = torch
        self.module = torch.export.load(str(path)).module()
        self.inputs = inputs

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self.torch.inference_mode():
            outputs = self.module(
                *(self.torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self.inputs)
            )
        return [output.numpy() for output in outputs]


class ExportedPredictor:
    """Repeated mask prediction on one image: the encoder runs once per `set_image`.

    Runs a folder of `garasam export`: ONNX files with ONNX Runtime (no torch), or torch.export
    programs (`--format pt2`, torch needed)."""

    def __init__(self, folder: str | os.PathLike, providers: list[str] | None = None) -> None:
        self.folder = Path(folder)
        self.config = read_model_json(self.folder)
        kind = self.config["format"]
        try:
            if kind == "onnx":
                self.encoder = _OnnxGraph(self.folder / "encoder.onnx", providers)
                self.decoder = _OnnxGraph(self.folder / "decoder.onnx", providers)
            else:
                self.encoder = _Pt2Graph(self.folder / "encoder.pt2", self.config["encoder"]["inputs"])
                self.decoder = _Pt2Graph(self.folder / "decoder.pt2", self.config["decoder"]["inputs"])
        except Exception as err:  # noqa: BLE001 - onnxruntime and torch raise their own types
            raise CheckpointError(f"{self.folder}: cannot load the exported model ({err})") from None
        self.side = int(self.config["input"]["side"])
        self.encoder_inputs = set(self.config["encoder"]["inputs"])
        self.reset_image()

    def reset_image(self) -> None:
        self.is_image_set = False
        self.embeddings: np.ndarray | None = None
        self.gates: dict[str, dict[str, np.ndarray]] = {}
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Encode an H x W x 3 uint8 image (RGB, or BGR as OpenCV reads it)."""
        image = arrays.rgb_image(image, image_format)
        pixels, resized = geometry.preprocess(image, self.side)
        gates = self.config["gates"]
        feeds = {"pixel_values": pixels}
        if "valid_tokens" in self.encoder_inputs:  # absent when no gate pools over the valid area only
            feeds["valid_tokens"] = geometry.valid_tokens(resized, gates["grid"], gates["patch"])
        outputs = self.encoder.run(feeds)
        self.reset_image()
        self.embeddings = outputs[0]
        names = gates["adapters"]
        self.gates = {
            name: {"segment": outputs[1 + 2 * i], "active": outputs[2 + 2 * i]}
            for i, name in enumerate(names)
        }
        self.original_size = (int(image.shape[0]), int(image.shape[1]))
        self.input_size = resized
        self.is_image_set = True

    def gate_decisions(self) -> dict[str, dict[str, np.ndarray]]:
        """Per adapter: `segment` (0 low / 1 high space, per window or image) and `active` (its rank)."""
        self._require_image()
        return self.gates

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks [C, H, W], scores [C] and low-resolution logits [C, h, w] for one prompt, as
        `GaraSamPredictor.predict` returns them (C = 3 with `multimask_output`, else 1)."""
        self._require_image()
        coords, labels = np.zeros((0, 2)), np.zeros((0,))
        if point_coords is not None:
            coords, labels = arrays.points(point_coords, point_labels)
        if box is not None:
            coords = np.concatenate([coords, arrays.box(box).reshape(2, 2)])
            labels = np.concatenate([labels, [2, 3]])  # SAM's labels of a box's two corners
        else:
            coords = np.concatenate([coords, [[0.0, 0.0]]])
            labels = np.concatenate([labels, [-1]])  # the padding point SAM adds without a box
        low_size = (4 * self.embeddings.shape[-2], 4 * self.embeddings.shape[-1])
        has_mask = np.zeros(1, dtype=np.float32)
        mask = np.zeros((1, 1, *low_size), dtype=np.float32)
        if mask_input is not None:
            mask, has_mask = arrays.mask_input(mask_input, low_size)[None], np.ones(1, dtype=np.float32)
        arrays.flags(multimask_output=multimask_output, return_logits=return_logits)
        scaled = geometry.scale_coords(coords, self.original_size, self.side)
        low_res, scores = self.decoder.run(
            {
                "image_embeddings": self.embeddings,
                "point_coords": scaled[None].astype(np.float32),
                "point_labels": labels[None].astype(np.float32),
                "mask_input": mask,
                "has_mask_input": has_mask,
            },
        )
        pick = slice(1, None) if multimask_output else slice(0, 1)
        low_res, scores = low_res[0, pick], scores[0, pick]
        masks = geometry.postprocess(low_res, self.input_size, self.original_size, self.side)
        return (masks if return_logits else masks > 0.0), scores, low_res

    def _require_image(self) -> None:
        if not self.is_image_set:
            raise RuntimeError("set an image with .set_image(...) before asking for masks")


def read_model_json(folder: Path) -> dict:
    """The folder's model.json, checked for what the runtime reads."""
    path = folder / MODEL_JSON
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(
            f"{folder}: no {MODEL_JSON}; export a model with garasam export --format onnx"
        ) from None
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{path}: unreadable ({err})") from None
    if (
        not isinstance(config, dict)
        or config.get("format_version") != FORMAT_VERSION
        or config.get("format") not in ("onnx", "pt2")
    ):
        raise CheckpointError(
            f"{path}: not an export of garasam (format onnx or pt2, version {FORMAT_VERSION})"
        )
    return config


# The name the SamPredictor-style API is documented under (docs/deploy.md).
OnnxPredictor = ExportedPredictor
