"""The models benchmarks/encoder.py times: the official `segment_anything` encoder and ours (frozen,
GaRA with calibrated space gates, LoRA), with random weights, and their nominal FLOPs."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
import warnings
from functools import partial

import torch
from torch import nn
from transformers import SamModel

from benchmarks.common import first_line
from garasam.adapters import (
    GaRALinear,
    adapter_layers,
    inject_adapters,
)
from garasam.adapters.config import AdapterConfig
from garasam.models import MODEL_TYPES, build_sam, sam_config

PIXEL_MEAN = (123.675, 116.28, 103.53)


PIXEL_STD = (58.395, 57.12, 57.375)


def encoder_flops(model_type: str) -> int:
    """Nominal FLOPs (2 per multiply-add) of one image through SAM's image encoder.

    Counts what both implementations compute: patch embedding; per block qkv, attention
    (scores, values and the decomposed rel-pos terms) and the output projection on the
    window-padded token grid, the MLP on the unpadded grid; the neck.
    """
    spec = MODEL_TYPES[model_type]
    c, grid = spec.hidden_size, spec.image_size // 16
    mlp = spec.mlp_dim if spec.mlp_dim is not None else 4 * c
    tokens = grid * grid
    flops = 2 * tokens * c * 3 * 16 * 16
    for index in range(spec.num_hidden_layers):
        if index in spec.global_attn_indexes:
            side = grid
            padded = tokens
        else:
            side = spec.window_size
            padded = (-(-grid // side) * side) ** 2
        length = side * side
        flops += 2 * padded * c * 4 * c  # qkv and proj
        flops += 2 * 2 * padded * length * c  # q k^T and p v
        flops += 2 * padded * c * 2 * side  # rel_h and rel_w
        flops += 2 * 2 * tokens * c * mlp
    out = spec.output_channels
    flops += 2 * tokens * c * out + 2 * tokens * out * out * 9
    return flops


def import_official_modeling() -> types.ModuleType:
    """`segment_anything.modeling`, also where torchvision is missing or broken.

    The package's `__init__` imports its predictor and mask generator, which import torchvision;
    the model classes never use it. If the normal import fails, the `modeling` subpackage is
    loaded under a bare parent package that skips that `__init__`.
    """
    try:
        return importlib.import_module("segment_anything.modeling")
    except ImportError as err:
        if importlib.util.find_spec("segment_anything") is None:
            raise ImportError("segment_anything is not installed") from err
    except Exception:  # noqa: BLE001 - e.g. a torchvision built for another torch raises RuntimeError
        pass
    spec = importlib.util.find_spec("segment_anything")
    parent = types.ModuleType("segment_anything")
    parent.__path__ = list(spec.submodule_search_locations or [])
    saved = sys.modules.get("segment_anything")
    sys.modules["segment_anything"] = parent
    try:
        return importlib.import_module("segment_anything.modeling")
    finally:
        if saved is None:
            sys.modules.pop("segment_anything", None)
        else:
            sys.modules["segment_anything"] = saved


def build_official_sam(model_type: str, device: torch.device) -> nn.Module:
    """The official `Sam` with the architecture of `model_type`, randomly initialised on `device`.

    Same arguments as segment_anything's `_build_sam` for vit_b/l/h (taken from our registry,
    so `tiny` gets the official code too); parameters are created on the device directly.
    """
    modeling = import_official_modeling()
    spec = MODEL_TYPES[model_type]
    config = sam_config(model_type)
    prompt, decoder = config.prompt_encoder_config, config.mask_decoder_config
    grid = spec.image_size // 16
    width = spec.output_channels
    with torch.device(device):
        sam = modeling.Sam(
            image_encoder=modeling.ImageEncoderViT(
                depth=spec.num_hidden_layers,
                embed_dim=spec.hidden_size,
                img_size=spec.image_size,
                mlp_ratio=config.vision_config.mlp_dim / spec.hidden_size,
                norm_layer=partial(nn.LayerNorm, eps=1e-6),
                num_heads=spec.num_attention_heads,
                patch_size=16,
                qkv_bias=True,
                use_rel_pos=True,
                global_attn_indexes=spec.global_attn_indexes,
                window_size=spec.window_size,
                out_chans=width,
            ),
            prompt_encoder=modeling.PromptEncoder(
                embed_dim=width,
                image_embedding_size=(grid, grid),
                input_image_size=(spec.image_size, spec.image_size),
                mask_in_chans=prompt.mask_input_channels,
            ),
            mask_decoder=modeling.MaskDecoder(
                num_multimask_outputs=decoder.num_multimask_outputs,
                transformer=modeling.TwoWayTransformer(
                    depth=decoder.num_hidden_layers,
                    embedding_dim=width,
                    mlp_dim=decoder.mlp_dim,
                    num_heads=decoder.num_attention_heads,
                ),
                transformer_dim=width,
                iou_head_depth=decoder.iou_head_depth,
                iou_head_hidden_dim=decoder.iou_head_hidden_dim,
            ),
            pixel_mean=list(PIXEL_MEAN),
            pixel_std=list(PIXEL_STD),
        )
    sam.to(device)  # the legacy torch.Tensor() behind pixel_mean/std ignores the device context
    randomise_positions(sam)
    return sam.eval().requires_grad_(False)


def randomise_positions(model: nn.Module, std: float = 0.1) -> None:
    """Fill the zero-initialised position parameters: timing or checking on zeros hides work."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ("rel_pos" in name or name.endswith("pos_embed")) and not param.any():
                param.normal_(0, std)


def calibrate_space_gates(model: nn.Module, pixel_values: torch.Tensor, high_fraction: float = 0.5) -> None:
    """Shift each GaRA space gate so that `high_fraction` of its rows choose the high space.

    Randomly initialised gates take one decision for every window of an image; a trained model
    mixes. The output bias is moved to the midpoint between two neighbouring logits, so no row
    sits on the threshold and small numerical differences cannot flip a decision. Layers are
    calibrated in order during one forward of `pixel_values`.
    """

    def shift(layer: GaRALinear, args: tuple[torch.Tensor, ...]) -> None:
        pooled = layer._gate_input(args[0], layer.space_gate)  # what the gate sees: valid tokens only
        logits = layer.space_gate(pooled).squeeze(-1).float().sort().values
        rows = logits.numel()
        high = round(rows * high_fraction)
        if high == 0:
            threshold = logits[-1] + 1.0
        elif high == rows:
            threshold = logits[0] - 1.0
        else:
            threshold = (logits[rows - high - 1] + logits[rows - high]) / 2
        layer.space_gate[-1].bias.sub_(threshold.to(layer.space_gate[-1].bias.dtype))

    handles = [
        layer.register_forward_pre_hook(shift)
        for layer in adapter_layers(model).values()
        # the two-space sigmoid gate; a gate choosing among three or more spaces is left as drawn
        if isinstance(layer, GaRALinear)
        and layer.space_gate is not None
        and layer.space_gate[-1].out_features == 1
    ]
    try:
        with torch.no_grad():
            model.get_image_embeddings(pixel_values)
    finally:
        for handle in handles:
            handle.remove()


def build_ours(
    model_type: str, device: torch.device, adapter: AdapterConfig | None, calibration: torch.Tensor
) -> nn.Module:
    """Our SAM with random weights (positions randomised), optional adapters with non-zero B.

    If `build_sam` fails (say, a transformers version whose SamModel it does not know), the model
    is built by transformers directly: the benchmark measures speed, not our initialisation.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # build_sam("tiny") warns when the bundled weights are absent
            model = build_sam(model_type, device=device)
    except Exception as err:  # noqa: BLE001 - see the docstring
        print(
            f"build_sam failed ({type(err).__name__}: {first_line(err)}); using SamModel(config)", flush=True
        )
        with torch.device(device):
            model = SamModel(sam_config(model_type))
    randomise_positions(model)
    if adapter is not None:
        inject_adapters(model, adapter)
        with torch.no_grad():
            for layer in adapter_layers(model).values():
                layer.lora_B.normal_(0, 0.02)
        calibrate_space_gates(model, calibration)
    return model.eval().requires_grad_(False)


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref.float()).norm() / ref.float().norm()).item()
