"""Export a SAM (with GaRA, LoRA or MoE-LoRA adapters) to ONNX: encoder, decoder and model.json.

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
from garasam.deploy.runtime import FORMAT_VERSION, MODEL_JSON, PRECISIONS
from garasam.errors import ConfigError
from garasam.io import atomic_path, atomic_write_text, file_sha256
from garasam.models.registry import family_of_config, model_type_of_config
from garasam.version import __version__

OPSET = 17
MAX_POINTS = 256  # points (box corners included) one decoder call takes in a .pt2
EXPORTABLE_FAMILIES = ("sam",)  # HQ-SAM, RobustSAM and SAM 2.1: see docs/deploy.md


class EncoderGraph(nn.Module):
    """pixel_values [1, 3, S, S], valid_tokens bool [1, g, g] -> embeddings, then per gated adapter
    its `segment` and `active` decisions."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.gated = [layer for layer in adapter_layers(model).values() if hasattr(layer, "_decide")]

    def forward(
        self, pixel_values: torch.Tensor, valid_tokens: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        for layer in self.gated:
            layer.valid_tokens = valid_tokens
        embeddings = self.model.get_image_embeddings(pixel_values)
        decisions = []
        for layer in self.gated:
            decisions += [layer.gate_state.segment, layer.gate_state.active]
        return (embeddings, *decisions)


class DecoderGraph(nn.Module):
    """Prompt encoder and mask decoder, SAM's ONNX convention: points with labels (-1 padding,
    0 background, 1 foreground, 2 / 3 a box's corners) in the resized frame, a low-resolution mask
    input with its flag. Returns the 4 masks (single, then SAM's three) and their IoU estimates."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.prompt_encoder = model.prompt_encoder
        self.mask_decoder = model.mask_decoder
        self.side = int(model.config.prompt_encoder_config.image_size)
        with torch.no_grad():
            self.register_buffer("positions", model.get_image_wide_positional_embeddings().detach().clone())

    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        encoder = self.prompt_encoder
        labels = point_labels[:, None, :, None]
        sparse = encoder.shared_embedding((point_coords + 0.5)[:, None], (self.side, self.side))
        sparse = torch.where(labels == -1, encoder.not_a_point_embed.weight, sparse)
        for label in range(4):
            sparse = sparse + (labels == label).to(sparse.dtype) * encoder.point_embed[label].weight
        flag = has_mask_input.view(1, 1, 1, 1)
        dense = flag * encoder.mask_embed(mask_input) + (1 - flag) * encoder.no_mask_embed.weight.view(
            1, -1, 1, 1
        )
        outputs = [
            self.mask_decoder(image_embeddings, self.positions, sparse, dense, multimask_output=multi)
            for multi in (False, True)
        ]
        masks = torch.cat([outputs[0][0], outputs[1][0]], dim=2)[:, 0]
        scores = torch.cat([outputs[0][1], outputs[1][1]], dim=-1)[:, 0]
        return masks, scores


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
    encoder_outputs: list[str]
    decoder_args: tuple[torch.Tensor, ...]
    adapters: list[str]  # the gated adapters, in the order of their decision outputs
    grid: tuple[int, int, int] | None
    adapter_config: dict[str, object] | None  # as the model came, before LoRA was merged
    merged: bool


def prepare_graphs(model: nn.Module) -> Graphs:
    """`model` made exportable (changed in place: LoRA merged, adapters on the dense path, fp32 on
    the CPU) and wrapped in the encoder and decoder graphs."""
    family = family_of_config(model.config)
    if family not in EXPORTABLE_FAMILIES:
        raise ConfigError(
            f"export of the {family} family is not built yet (SAM 1's sam family only: tiny, vit_b/l/h); "
            "see docs/deploy.md"
        )
    config = adapter_config(model)
    merged = isinstance(config, LoRAConfig)
    if merged:
        model = merge_and_unload(model)  # fixed-rank: one weight matrix computes it
    model = model.eval().float().cpu()
    for layer in adapter_layers(model).values():
        layer.fused, layer.rank_kernel = True, False  # dense: every component, masked
    side = int(model.config.vision_config.image_size)
    encoder = EncoderGraph(model)
    grid = next((layer.token_grid for layer in encoder.gated if layer.token_grid is not None), None)
    names = [name for name, layer in adapter_layers(model).items() if layer in encoder.gated]
    pixels = torch.zeros(1, 3, side, side)
    # the valid area matters only where a gate pools over it alone (gate_pooling: valid)
    pooled_over_valid = any(
        getattr(layer.config, "gate_pooling", "all") == "valid" for layer in encoder.gated
    )
    args = (
        (pixels, torch.ones(1, grid[0], grid[0], dtype=torch.bool))
        if grid and pooled_over_valid
        else (pixels,)
    )
    with torch.no_grad():
        embeddings = torch.zeros_like(model.get_image_embeddings(pixels))
    low = 4 * embeddings.shape[-1]
    return Graphs(
        model=model,
        encoder=encoder,
        decoder=DecoderGraph(model).eval(),
        encoder_args=args,
        encoder_inputs=["pixel_values", "valid_tokens"][: len(args)],
        encoder_outputs=["image_embeddings"]
        + [f"{kind}_{i}" for i in range(len(names)) for kind in ("segment", "active")],
        decoder_args=(
            embeddings,
            torch.zeros(1, 2, 2),
            torch.tensor([[1.0, -1.0]]),
            torch.zeros(1, 1, low, low),
            torch.zeros(1),
        ),
        adapters=names,
        grid=grid,
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
                "encoder.onnx",
                graphs.encoder,
                graphs.encoder_args,
                graphs.encoder_inputs,
                graphs.encoder_outputs,
                None,
            ),
            (
                "decoder.onnx",
                graphs.decoder,
                graphs.decoder_args,
                DECODER_INPUTS,
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
    _describe(graphs, out, "onnx", precision, source, ("encoder.onnx", "decoder.onnx"))
    return out


def export_pt2(model: nn.Module, out: str | os.PathLike, source: dict[str, object] | None = None) -> Path:
    """Write `encoder.pt2`, `decoder.pt2` (torch.export ExportedPrograms) and `model.json` into `out`.

    The same graphs as the ONNX export; they load with `torch.export.load` (torch needed) and are
    what AOTInductor and ExecuTorch lower."""
    graphs, out = prepare_graphs(model), Path(out)
    points = torch.export.Dim("points", min=1, max=MAX_POINTS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, graph, args, dynamic in (
            ("encoder.pt2", graphs.encoder, graphs.encoder_args, None),
            ("decoder.pt2", graphs.decoder, graphs.decoder_args, ({}, {1: points}, {1: points}, {}, {})),
        ):
            program = torch.export.export(graph, args, dynamic_shapes=dynamic, strict=False)
            with atomic_path(out / name) as tmp:
                torch.export.save(program, str(tmp))
    _describe(graphs, out, "pt2", "fp32", source, ("encoder.pt2", "decoder.pt2"))
    return out


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
            "geometry": "longest side resized (Pillow bilinear), normalised, zero padded bottom/right",
            "pixel_mean": [123.675, 116.28, 103.53],
            "pixel_std": [58.395, 57.12, 57.375],
        },
        "gates": {
            "adapters": graphs.adapters,
            "grid": graphs.grid[0] if graphs.grid else 1,
            "patch": graphs.grid[2] if graphs.grid else side,
        },
        "encoder": {
            "inputs": graphs.encoder_inputs,
            "outputs": graphs.encoder_outputs,
            "shapes": "pixel_values [1, 3, S, S] float32, valid_tokens [1, g, g] bool; image_embeddings [1, C, g, g], "
            "segment_i / active_i int64 [rows] per gated adapter",
        },
        "decoder": {
            "inputs": DECODER_INPUTS,
            "outputs": DECODER_OUTPUTS,
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
