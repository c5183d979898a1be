"""Export a SAM (with GaRA, LoRA or MoE-LoRA adapters) to ONNX: encoder, decoder and model.json.

Every image family exports: SAM, HQ-SAM and RobustSAM (whose decoders also read the first global
block's output) and SAM 2.1 (whose decoder reads two high-resolution maps). The encoder graph
returns these features beside the embeddings and the decoder graph takes them as inputs.

The adapters export as they run on the fast path: every rank-1 component is computed and multiplied
by its gate's 0/1 decision (`layer.fused`), so the graph has fixed shapes and no data-dependent
branch, gather or host read. The valid area of the padded input is a graph input (`valid_tokens`),
so the gates pool over exactly the tokens they pool over in PyTorch, and each adapter's decisions
(`segment`, `active` per window or image) are graph outputs. LoRA is merged into the weights.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from garasam.adapters import LoRAConfig, adapter_config, merge_and_unload
from garasam.adapters.inspect import adapter_layers
from garasam.assembly.encoding import encode_for_export
from garasam.data.transforms import PIXEL_MEAN, PIXEL_STD
from garasam.deploy.runtime import FORMAT_VERSION, GRAPH_FILES, MODEL_JSON, PRECISIONS
from garasam.errors import ConfigError
from garasam.io import atomic_path, atomic_write_text, file_sha256
from garasam.models.features import input_geometry
from garasam.models.registry import family_of_config, model_type_of_config
from garasam.version import __version__

OPSET = 17
MAX_POINTS = 256  # points (box corners included) one decoder call takes in a .pt2
# the decoder's inputs beside the embeddings, per family (the encoder's outputs of the same names)
FEATURE_NAMES = {
    "sam": [],
    "hq": ["early_features"],
    "robust": ["early_features"],
    "sam2": ["high_res_features_0", "high_res_features_1"],
}


class EncoderGraph(nn.Module):
    """pixel_values [1, 3, S, S], valid_tokens bool [1, g, g] -> embeddings, the features the
    family's decoder reads besides, then per gated adapter its `segment` and `active` decisions."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.gated = [name for name, layer in adapter_layers(model).items() if hasattr(layer, "_decide")]

    def forward(
        self, pixel_values: torch.Tensor, valid_tokens: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        features, gates = encode_for_export(self.model, pixel_values, valid_tokens)
        decisions = []
        for name in self.gated:
            decisions += [gates.states[name].segment, gates.states[name].active]
        return (features.embeddings, *features.intermediate, *decisions)


class DecoderGraph(nn.Module):
    """Prompt encoder and mask decoder, SAM's ONNX convention: points with labels (-1 padding,
    0 background, 1 foreground, 2 / 3 a box's corners) in the resized frame, a low-resolution mask
    input with its flag, then the features the family's decoder reads beside the embeddings
    (`FEATURE_NAMES`). Returns the 4 masks (single, then the three) and their IoU estimates."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.family = family_of_config(model.config)
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = model.mask_decoder
        self.side = int(model.config.prompt_encoder_config.image_size)
        with torch.no_grad():
            # contiguous: ExecuTorch reads a constant's bytes in their default order (a permuted
            # buffer, as transformers returns this one, gave wrong masks)
            self.register_buffer("positions", model.get_image_wide_positional_embeddings().contiguous())

    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        *features: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        encoder = self.prompt_encoder
        labels = point_labels[:, None, :, None]
        sparse = encoder.shared_embedding((point_coords + 0.5)[:, None], (self.side, self.side))
        sparse = torch.where(labels == -1, encoder.not_a_point_embed.weight, sparse)
        for label in range(4):
            sparse = sparse + (labels == label).to(sparse.dtype) * self._point_embedding(label)
        flag = has_mask_input.view(1, 1, 1, 1)
        dense = flag * encoder.mask_embed(mask_input) + (1 - flag) * encoder.no_mask_embed.weight.view(
            1, -1, 1, 1
        )
        outputs = [
            self._decode(image_embeddings, sparse, dense, multi, list(features)) for multi in (False, True)
        ]
        masks = torch.cat([outputs[0][0], outputs[1][0]], dim=2)[:, 0]
        scores = torch.cat([outputs[0][1], outputs[1][1]], dim=-1)[:, 0]
        return masks, scores

    def _point_embedding(self, label: int) -> torch.Tensor:
        """The embedding added to points of `label` (SAM: one module per label; SAM 2: one table)."""
        table = self.prompt_encoder.point_embed
        return table.weight[label] if isinstance(table, nn.Embedding) else table[label].weight

    def _decode(
        self,
        embeddings: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        multimask: bool,
        features: list[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The family's mask decoder on one prompt's embeddings: (masks, iou scores)."""
        extra: dict[str, object] = {}
        if self.family == "sam2":
            extra["high_resolution_features"] = features
        elif self.family in ("hq", "robust"):
            extra["intermediate_embeddings"] = features
            if self.family == "hq":
                extra["hq_token_only"] = False  # SAM's masks plus the HQ token's, as predicted in PyTorch
        outputs = self.mask_decoder(
            image_embeddings=embeddings,
            image_positional_embeddings=self.positions,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            **extra,
        )
        return outputs[0], outputs[1]


DECODER_INPUTS = ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"]
DECODER_OUTPUTS = ["low_res_masks", "iou_predictions"]


@dataclass
class Graphs:
    """The two graphs of one model, with example inputs and the names the files give them."""

    model: nn.Module
    encoder: EncoderGraph
    decoder: DecoderGraph
    encoder_args: tuple[torch.Tensor, ...]
    encoder_inputs: list[str]
    features: list[str]  # the encoder's outputs the decoder reads: the embeddings, then the family's
    encoder_outputs: list[str]
    decoder_args: tuple[torch.Tensor, ...]
    decoder_inputs: list[str]
    adapters: list[str]  # the gated adapters, in the order of their decision outputs
    grid: tuple[int, int, int] | None
    square: bool  # SAM 2's geometry: the image stretched to the square (else: longest side, padded)
    adapter_config: dict[str, object] | None  # as the model came, before LoRA was merged
    merged: bool


def prepare_graphs(model: nn.Module) -> Graphs:
    """`model` made exportable (changed in place: LoRA merged, adapters on the dense path, fp32 on
    the CPU) and wrapped in the encoder and decoder graphs."""
    family = family_of_config(model.config)
    config = adapter_config(model)
    merged = isinstance(config, LoRAConfig)
    if merged:
        model = merge_and_unload(model)  # fixed-rank: one weight matrix computes it
    model = model.eval().float().cpu()
    for layer in adapter_layers(model).values():
        layer.fused, layer.rank_kernel = True, False  # dense: every component, masked
    side, square = input_geometry(model)
    encoder = EncoderGraph(model)
    gated = [adapter_layers(model)[name] for name in encoder.gated]
    grid = next((layer.token_grid for layer in gated if layer.token_grid is not None), None)
    pixels = torch.zeros(1, 3, side, side)
    # the valid area matters only where a gate pools over it alone (gate_pooling: valid) and the
    # image does not fill the square (SAM 2 stretches it)
    pooled_over_valid = not square and any(
        getattr(layer.config, "gate_pooling", "all") == "valid" for layer in gated
    )
    args = (
        (pixels, torch.ones(1, grid[0], grid[0], dtype=torch.bool))
        if grid and pooled_over_valid
        else (pixels,)
    )
    with torch.no_grad():
        features, _ = encode_for_export(model, pixels, None)
    # plain (contiguous) examples: the encoder's embeddings come channels-last, and torch.export
    # programs keep an example's strides as the layout they expect (NumPy arrays arrive contiguous)
    features = [torch.zeros(t.shape) for t in (features.embeddings, *features.intermediate)]
    feature_names = ["image_embeddings", *FEATURE_NAMES[family]]
    low = 4 * features[0].shape[-1]
    return Graphs(
        model=model,
        encoder=encoder,
        decoder=DecoderGraph(model).eval(),
        encoder_args=args,
        encoder_inputs=["pixel_values", "valid_tokens"][: len(args)],
        features=feature_names,
        encoder_outputs=feature_names
        + [f"{kind}_{i}" for i in range(len(encoder.gated)) for kind in ("segment", "active")],
        decoder_args=(
            features[0],
            torch.zeros(1, 2, 2),
            torch.tensor([[1.0, -1.0]]),
            torch.zeros(1, 1, low, low),
            torch.zeros(1),
            *features[1:],
        ),
        decoder_inputs=DECODER_INPUTS + feature_names[1:],
        adapters=encoder.gated,
        grid=grid,
        square=square,
        adapter_config=None if config is None else config.to_dict(),
        merged=merged,
    )


def export_onnx(
    model: nn.Module,
    out: str | os.PathLike,
    source: dict[str, object] | None = None,
    precision: str = "fp32",
) -> Path:
    """Write `encoder.onnx`, `decoder.onnx` and `model.json` for `model` into `out`; returns `out`.

    `precision`: fp32; fp16 (weights and activations, inputs and outputs kept float32); int8
    (ONNX Runtime's dynamic quantisation: int8 weights of the matrix products, activations
    quantised on the fly)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    graphs, out = prepare_graphs(model), Path(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python values read from shapes
        for name, graph, args, inputs, outputs, dynamic in (
            (
                GRAPH_FILES["onnx"][0],
                graphs.encoder,
                graphs.encoder_args,
                graphs.encoder_inputs,
                graphs.encoder_outputs,
                None,
            ),
            (
                GRAPH_FILES["onnx"][1],
                graphs.decoder,
                graphs.decoder_args,
                graphs.decoder_inputs,
                DECODER_OUTPUTS,
                {"point_coords": {1: "points"}, "point_labels": {1: "points"}},
            ),
        ):
            with atomic_path(out / name) as tmp:
                torch.onnx.export(
                    graph,
                    args,
                    str(tmp),
                    input_names=inputs,
                    output_names=outputs,
                    dynamic_axes=dynamic,
                    opset_version=OPSET,
                    dynamo=False,
                )
            _convert(out / name, precision)
    _describe(graphs, out, "onnx", precision, source, GRAPH_FILES["onnx"])
    return out


def export_program(
    model: nn.Module,
    out: str | os.PathLike,
    source: dict[str, object] | None = None,
    fmt: str = "pt2",
) -> Path:
    """Write the two graphs as torch.export programs, lowered as `fmt` says, and `model.json`.

    `pt2`: the ExportedPrograms (`encoder.pt2`, `decoder.pt2`; load with `torch.export.load`).
    `aoti`: AOTInductor packages (`encoder.aoti.pt2`, ...): compiled C++ for this machine's CPU and
    this torch version, loaded with `torch._inductor.aoti_load_package` (minutes to compile).
    `pte`: ExecuTorch programs (`encoder.pte`, ...) with every operator XNNPACK takes delegated to
    it, the rest on ExecuTorch's portable kernels (needs `pip install 'garasam[pte]'`).
    The same graphs as the ONNX export; the decoder takes 1 to `MAX_POINTS` points."""
    if fmt not in _LOWER:
        raise ConfigError(f"format must be one of {', '.join(_LOWER)}, got {fmt!r}")
    graphs, out = prepare_graphs(model), Path(out)
    points = torch.export.Dim("points", min=1, max=MAX_POINTS)
    extra = graphs.features[1:]  # the decoder's *features: one tuple entry when the family has any
    decoder_shapes = ({}, {1: points}, {1: points}, {}, {}) + ((tuple({} for _ in extra),) if extra else ())
    files = GRAPH_FILES[fmt]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # valid_tokens assigned during export: a plain input here
        for name, graph, args, dynamic in (
            (files[0], graphs.encoder, graphs.encoder_args, None),
            (files[1], graphs.decoder, graphs.decoder_args, decoder_shapes),
        ):
            program = torch.export.export(graph, args, dynamic_shapes=dynamic, strict=False)
            with atomic_path(out / name) as tmp, open(tmp, "wb") as handle:
                _LOWER[fmt](program, handle)  # a handle: torch wants paths ending .pt2, not .tmp
    _describe(graphs, out, fmt, "fp32", source, files)
    return out


def _compile_aoti(program: torch.export.ExportedProgram, handle: object) -> None:
    torch._inductor.aoti_compile_and_package(program, package_path=handle)


def _lower_executorch(program: torch.export.ExportedProgram, handle: object) -> None:
    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
    except ImportError:
        raise ConfigError("--format pte needs ExecuTorch: pip install 'garasam[pte]' (executorch)") from None
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    lowered.to_executorch().write_to_file(handle)


_LOWER = {"pt2": torch.export.save, "aoti": _compile_aoti, "pte": _lower_executorch}


def _describe(
    graphs: Graphs,
    out: Path,
    fmt: str,
    precision: str,
    source: dict[str, object] | None,
    files: tuple[str, str],
) -> None:
    """model.json: what a runtime needs to feed the graphs and read their outputs, and provenance."""
    low = 4 * graphs.decoder_args[0].shape[-1]
    side = graphs.encoder_args[0].shape[-1]
    geometry = (
        "stretched to the square (Pillow bilinear), normalised"
        if graphs.square
        else "longest side resized (Pillow bilinear), normalised, zero padded bottom/right"
    )
    description = {
        "format": fmt,
        "precision": precision,
        "format_version": FORMAT_VERSION,
        "garasam_version": __version__,
        "torch_version": torch.__version__,
        "model_type": model_type_of_config(graphs.model.config),
        "source": source or {},
        "adapters": None
        if graphs.adapter_config is None
        else {"config": graphs.adapter_config, "merged": graphs.merged},
        "input": {
            "side": side,
            "square": graphs.square,
            "geometry": geometry,
            "pixel_mean": list(PIXEL_MEAN),
            "pixel_std": list(PIXEL_STD),
        },
        "gates": {
            "adapters": graphs.adapters,
            "grid": graphs.grid[0] if graphs.grid else 1,
            "patch": graphs.grid[2] if graphs.grid else side,
        },
        "encoder": {
            "inputs": graphs.encoder_inputs,
            "outputs": graphs.encoder_outputs,
            "features": graphs.features,
            "shapes": "pixel_values [1, 3, S, S] float32, valid_tokens [1, g, g] bool; image_embeddings [1, C, g, g], "
            "the features the decoder reads besides (HQ-SAM, RobustSAM: early_features [1, g, g, D]; SAM 2.1: "
            "high_res_features_0 [1, C/8, 4g, 4g], high_res_features_1 [1, C/4, 2g, 2g]), "
            "segment_i / active_i int64 [rows] per gated adapter",
        },
        "decoder": {
            "inputs": graphs.decoder_inputs,
            "outputs": DECODER_OUTPUTS,
            # SAM 2's prompt encoder adds its padding point after a box too; SAM's only without a box
            "padding_point": "always" if graphs.decoder.family == "sam2" else "without a box",
            "shapes": f"point_coords [1, N, 2] (resized frame), point_labels [1, N] (-1, 0, 1, 2, 3), "
            f"mask_input [1, 1, {low}, {low}], has_mask_input [1]; low_res_masks [1, 4, {low}, {low}] "
            "(single, then SAM's three), iou_predictions [1, 4]",
        },
        "files": {name: file_sha256(out / name) for name in files},
    }
    atomic_write_text(out / MODEL_JSON, json.dumps(description, indent=2) + "\n")


def _convert(path: Path, precision: str) -> None:
    """Rewrite the fp32 graph at `path` in `precision` (atomically)."""
    if precision == "fp32":
        return
    import logging

    import onnx

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser logs every tensor it leaves in float
    try:
        with atomic_path(path) as tmp:
            if precision == "int8":
                from onnxruntime.quantization import QuantType, quantize_dynamic

                quantize_dynamic(str(path), str(tmp), weight_type=QuantType.QInt8)
            else:
                from onnxruntime.transformers.float16 import convert_float_to_float16

                onnx.save(convert_float_to_float16(onnx.load(str(path)), keep_io_types=True), str(tmp))
    finally:
        root.setLevel(level)
