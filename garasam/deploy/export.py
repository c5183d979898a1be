"""Export a SAM (with GaRA, LoRA or MoE-LoRA adapters) to ONNX: encoder, decoder and model.json.

The adapters export as they run on the fast path: every rank-1 component is computed and multiplied
by its gate's 0/1 decision (`layer.fused`), so the graph has fixed shapes and no data-dependent
branch, gather or host read. The valid area of the padded input is a graph input (`valid_tokens`),
so the gates pool over exactly the tokens they pool over in PyTorch, and each adapter's decisions
(`segment`, `active` per window or image) are graph outputs. LoRA is merged into the weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path

import torch
from torch import nn

from garasam.adapters import LoRAConfig, adapter_config, merge_and_unload
from garasam.adapters.inspect import adapter_layers
from garasam.deploy.runtime import FORMAT_VERSION, MODEL_JSON, PRECISIONS
from garasam.errors import ConfigError
from garasam.io import atomic_path, atomic_write_text
from garasam.models.registry import family_of_config, model_type_of_config
from garasam.version import __version__

OPSET = 17
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


def export_onnx(
    model: nn.Module,
    out: str | os.PathLike,
    source: dict[str, object] | None = None,
    precision: str = "fp32",
) -> Path:
    """Write `encoder.onnx`, `decoder.onnx` and `model.json` for `model` (changed in place: LoRA merged,
    adapters set to the dense path) into `out`; returns `out`.

    `precision`: fp32; fp16 (weights and activations, inputs and outputs kept float32); int8
    (ONNX Runtime's dynamic quantisation: int8 weights of the matrix products, activations
    quantised on the fly)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    family = family_of_config(model.config)
    if family not in EXPORTABLE_FAMILIES:
        raise ConfigError(
            f"export of the {family} family is not built yet (SAM 1's sam family only: tiny, vit_b/l/h); "
            "see docs/deploy.md"
        )
    out = Path(out)
    config = adapter_config(model)
    if isinstance(config, LoRAConfig):
        model = merge_and_unload(model)  # fixed-rank: one weight matrix computes it
    model = model.eval().float().cpu()
    for layer in adapter_layers(model).values():
        layer.fused, layer.rank_kernel = True, False  # dense: every component, masked
    side = int(model.config.vision_config.image_size)
    encoder = EncoderGraph(model)
    grid = next((layer.token_grid for layer in encoder.gated if layer.token_grid is not None), None)
    pixels = torch.zeros(1, 3, side, side)
    valid = (
        torch.ones(1, grid[0], grid[0], dtype=torch.bool) if grid else torch.ones(1, 1, 1, dtype=torch.bool)
    )
    names = [name for name, layer in adapter_layers(model).items() if layer in encoder.gated]
    decision_names = [f"{kind}_{i}" for i in range(len(names)) for kind in ("segment", "active")]
    embeddings = torch.zeros_like(model.get_image_embeddings(pixels))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python values read from shapes
        with atomic_path(out / "encoder.onnx") as tmp:
            torch.onnx.export(
                encoder,
                (pixels, valid) if names else (pixels,),
                str(tmp),
                input_names=["pixel_values", "valid_tokens"] if names else ["pixel_values"],
                output_names=["image_embeddings", *decision_names],
                opset_version=OPSET,
                dynamo=False,
            )
        decoder = DecoderGraph(model).eval()
        low = 4 * embeddings.shape[-1]
        with atomic_path(out / "decoder.onnx") as tmp:
            torch.onnx.export(
                decoder,
                (
                    embeddings,
                    torch.zeros(1, 2, 2),
                    torch.tensor([[1.0, -1.0]]),
                    torch.zeros(1, 1, low, low),
                    torch.zeros(1),
                ),
                str(tmp),
                input_names=[
                    "image_embeddings",
                    "point_coords",
                    "point_labels",
                    "mask_input",
                    "has_mask_input",
                ],
                output_names=["low_res_masks", "iou_predictions"],
                dynamic_axes={"point_coords": {1: "points"}, "point_labels": {1: "points"}},
                opset_version=OPSET,
                dynamo=False,
            )
    for name in ("encoder.onnx", "decoder.onnx"):
        _convert(out / name, precision)
    description = {
        "format": "onnx",
        "precision": precision,
        "format_version": FORMAT_VERSION,
        "garasam_version": __version__,
        "torch_version": torch.__version__,
        "model_type": model_type_of_config(model.config),
        "source": source or {},
        "adapters": None
        if config is None
        else {"config": config.to_dict(), "merged": isinstance(config, LoRAConfig)},
        "input": {
            "side": side,
            "geometry": "longest side resized (Pillow bilinear), normalised, zero padded bottom/right",
            "pixel_mean": [123.675, 116.28, 103.53],
            "pixel_std": [58.395, 57.12, 57.375],
        },
        "gates": {
            "adapters": names,
            # the exporter drops the input where no gate pools over the valid area only (gate_pooling: all)
            "valid_tokens_input": "valid_tokens" in _graph_inputs(out / "encoder.onnx"),
            "grid": grid[0] if grid else 1,
            "patch": grid[2] if grid else side,
        },
        "encoder": {
            "inputs": ["pixel_values [1, 3, S, S] float32", "valid_tokens [1, g, g] bool"],
            "outputs": ["image_embeddings [1, 256, g, g]", "segment_i / active_i int64 per gated adapter"],
        },
        "decoder": {
            "inputs": [
                "image_embeddings",
                "point_coords [1, N, 2] resized frame",
                "point_labels [1, N] (-1, 0, 1, 2, 3)",
                f"mask_input [1, 1, {low}, {low}]",
                "has_mask_input [1]",
            ],
            "outputs": [f"low_res_masks [1, 4, {low}, {low}] (single, then three)", "iou_predictions [1, 4]"],
        },
        "files": {name: _digest(out / name) for name in ("encoder.onnx", "decoder.onnx")},
    }
    atomic_write_text(out / MODEL_JSON, json.dumps(description, indent=2) + "\n")
    return out


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


def _graph_inputs(path: Path) -> list[str]:
    import onnx

    return [node.name for node in onnx.load(str(path), load_external_data=False).graph.input]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
