"""`OnnxPredictor` (= `ExportedPredictor`): an exported GaRA-SAM folder run without PyTorch.

The SamPredictor API (`set_image`, `predict` with the same arguments and return order) over the
folder `garasam export --format onnx` writes: `encoder.onnx` (image encoder, adapters and hard gates
included; the gates' decisions are outputs), `decoder.onnx` (prompt encoder and mask decoder) and
`model.json` (geometry, names, provenance). Needs onnxruntime, numpy and Pillow only; a folder of
`--format pt2` (torch.export programs of the same graphs), `--format aoti` (AOTInductor packages)
or `--format pte` (ExecuTorch with XNNPACK) runs the same way with torch (and ExecuTorch) installed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from garasam import arrays
from garasam.deploy import geometry
from garasam.errors import CheckpointError
from garasam.io import file_sha256

MODEL_JSON = "model.json"
PRECISIONS = ("fp32", "fp16", "int8")
# the encoder's and the decoder's file of each format
GRAPH_FILES = {
    "onnx": ("encoder.onnx", "decoder.onnx"),
    "pt2": ("encoder.pt2", "decoder.pt2"),
    "aoti": ("encoder.aoti.pt2", "decoder.aoti.pt2"),
    "pte": ("encoder.pte", "decoder.pte"),
}
FORMAT_VERSION = 2  # 2: the family's decoder features, SAM 2's geometry


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


class _TorchGraph:
    """One torch.export program, AOTInductor package or ExecuTorch program (needs torch; ExecuTorch
    for .pte): `run(feeds)` -> the outputs, as NumPy arrays."""

    def __init__(self, path: Path, inputs: list[str], fmt: str) -> None:
        import torch

        self.torch = torch
        if fmt == "aoti":
            self.module = torch._inductor.aoti_load_package(str(path))
        elif fmt == "pte":
            from executorch.runtime import Runtime

            method = Runtime.get().load_program(str(path)).load_method("forward")
            self.module = lambda *args: method.execute(list(args))
        else:
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

    def __init__(
        self, folder: str | os.PathLike, providers: list[str] | None = None, verify: bool = True
    ) -> None:
        """`verify`: check each graph's sha256 against model.json first (about a second per GB)."""
        self.folder = Path(folder)
        self.config = read_model_json(self.folder, verify)
        kind = self.config["format"]
        paths = [self.folder / name for name in GRAPH_FILES[kind]]
        if kind == "aoti":
            _require_compiling_torch(self.folder, self.config)
        try:
            if kind == "onnx":
                self.encoder, self.decoder = (_OnnxGraph(path, providers) for path in paths)
            else:
                self.encoder, self.decoder = (
                    _TorchGraph(path, self.config[part]["inputs"], kind)
                    for path, part in zip(paths, ("encoder", "decoder"), strict=True)
                )
        except Exception as err:  # noqa: BLE001 - onnxruntime and torch raise their own types
            raise CheckpointError(f"{self.folder}: cannot load the exported model ({err})") from None
        self.side = int(self.config["input"]["side"])
        self.square = bool(self.config["input"]["square"])
        self.encoder_inputs = set(self.config["encoder"]["inputs"])
        self.feature_names = list(self.config["encoder"]["features"])
        self.pad_always = self.config["decoder"]["padding_point"] == "always"
        self.reset_image()

    def reset_image(self) -> None:
        self.is_image_set = False
        self.embeddings: np.ndarray | None = None
        self.features: dict[str, np.ndarray] = {}
        self.gates: dict[str, dict[str, np.ndarray]] = {}
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Encode an H x W x 3 uint8 image (RGB, or BGR as OpenCV reads it)."""
        image = arrays.rgb_image(image, image_format)
        pixels, resized = geometry.preprocess(image, self.side, self.square)
        gates = self.config["gates"]
        feeds = {"pixel_values": pixels}
        if "valid_tokens" in self.encoder_inputs:  # absent when no gate pools over the valid area only
            feeds["valid_tokens"] = geometry.valid_tokens(resized, gates["grid"], gates["patch"])
        outputs = self.encoder.run(feeds)
        self.reset_image()
        count = len(self.feature_names)
        self.features = dict(zip(self.feature_names, outputs[:count], strict=True))
        self.embeddings = outputs[0]
        self.gates = {
            name: {"segment": outputs[count + 2 * i], "active": outputs[count + 1 + 2 * i]}
            for i, name in enumerate(gates["adapters"])
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
        if box is None or self.pad_always:
            coords = np.concatenate([coords, [[0.0, 0.0]]])
            labels = np.concatenate([labels, [-1]])  # the padding point SAM adds without a box
        low_size = (4 * self.embeddings.shape[-2], 4 * self.embeddings.shape[-1])
        has_mask = np.zeros(1, dtype=np.float32)
        mask = np.zeros((1, 1, *low_size), dtype=np.float32)
        if mask_input is not None:
            mask, has_mask = arrays.mask_input(mask_input, low_size)[None], np.ones(1, dtype=np.float32)
        arrays.flags(multimask_output=multimask_output, return_logits=return_logits)
        scaled = geometry.scale_coords(coords, self.original_size, self.side, self.square)
        low_res, scores = self.decoder.run(
            {
                **self.features,
                "point_coords": scaled[None].astype(np.float32),
                "point_labels": labels[None].astype(np.float32),
                "mask_input": mask,
                "has_mask_input": has_mask,
            },
        )
        pick = slice(1, None) if multimask_output else slice(0, 1)
        low_res, scores = low_res[0, pick], scores[0, pick]
        masks = geometry.postprocess(low_res, self.input_size, self.original_size, self.side, self.square)
        return (masks if return_logits else masks > 0.0), scores, low_res

    def _require_image(self) -> None:
        if not self.is_image_set:
            raise RuntimeError("set an image with .set_image(...) before asking for masks")


def read_model_json(folder: Path, verify: bool = True) -> dict:
    """The folder's model.json, checked for what the runtime reads; with `verify`, each graph file
    is there and has the sha256 the export wrote (a changed or half-copied file is refused)."""
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
        or config.get("format") not in GRAPH_FILES
    ):
        version = config.get("format_version") if isinstance(config, dict) else None
        raise CheckpointError(
            f"{path}: not an export of this garasam (format {', '.join(GRAPH_FILES)}, version {FORMAT_VERSION}; "
            f"this one says version {version}); export the model again with this garasam"
        )
    problem = _schema_problem(config)
    if problem:
        raise CheckpointError(f"{path}: {problem}; the file was edited or damaged, export the model again")
    if verify:
        for name, digest in config["files"].items():
            if not (folder / name).is_file():
                raise CheckpointError(f"{folder / name}: missing; export the model again")
            if file_sha256(folder / name) != digest:
                raise CheckpointError(
                    f"{folder / name}: its sha256 differs from the one in {MODEL_JSON} (changed or "
                    "half copied); export the model again"
                )
    return config


def _require_compiling_torch(folder: Path, config: dict) -> None:
    """AOTInductor packages are compiled code for one torch version: refuse another's by name."""
    import torch

    if config.get("torch_version") != torch.__version__:
        raise CheckpointError(
            f"{folder}: AOTInductor packages run only under the torch that compiled them "
            f"({config.get('torch_version')}); this is torch {torch.__version__}: export again here"
        )


# what the runtime reads from model.json: (section, key) -> the check its value must pass
_SCHEMA = {
    ("input", "side"): lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 8192,
    ("input", "square"): lambda v: isinstance(v, bool),
    ("encoder", "inputs"): lambda v: v in (["pixel_values"], ["pixel_values", "valid_tokens"]),
    ("encoder", "features"): lambda v: _names(v) and v[:1] == ["image_embeddings"],
    ("decoder", "inputs"): lambda v: _names(v),
    ("decoder", "padding_point"): lambda v: v in ("always", "without a box"),
    ("gates", "adapters"): lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v),
    ("gates", "grid"): lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
    ("gates", "patch"): lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
}


def _names(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(n, str) for n in value)


def _schema_problem(config: dict) -> str | None:
    """What in `config` the runtime cannot use, or None."""
    for (section, key), valid in _SCHEMA.items():
        part = config.get(section)
        if not isinstance(part, dict) or key not in part:
            return f"{section}.{key} is missing"
        if not valid(part[key]):
            return f"{section}.{key} = {part[key]!r} is not valid"
    files = config.get("files")
    expected = set(GRAPH_FILES[config["format"]])
    if (
        not isinstance(files, dict)
        or set(files) != expected
        or not all(isinstance(d, str) for d in files.values())
    ):
        return f"files must list {' and '.join(sorted(expected))} with their sha256"
    return None


# The name the SamPredictor-style API is documented under (docs/deploy.md).
OnnxPredictor = ExportedPredictor
