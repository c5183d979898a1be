"""Building a transformers SAM (`SamModel`, `SamHQModel` or our `RobustSamModel`) for one of our
model types, random or from a checkpoint."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedModel, Sam2Model, Sam2VideoModel, SamModel
from transformers.models.sam.modeling_sam import SamPositionalEmbedding, SamVisionAttention, SamVisionEncoder
from transformers.models.sam2.modeling_sam2 import Sam2HieraDetModel, Sam2PositionalEmbedding
from transformers.models.sam2_video.modeling_sam2_video import (
    Sam2VideoMemoryAttention,
    Sam2VideoMemoryFuserCXBlock,
    Sam2VideoPositionalEmbedding,
    Sam2VideoVisionRotaryEmbedding,
)
from transformers.models.sam_hq.modeling_sam_hq import (
    SamHQPositionalEmbedding,
    SamHQVisionAttention,
    SamHQVisionEncoder,
)

from garasam.errors import ConfigError
from garasam.models.checkpoint import identify_checkpoint, load_sam_weights, tie_positional_embedding
from garasam.models.hub import is_hub_id
from garasam.models.hub import resolve as resolve_hub_id
from garasam.models.mask_decoders import HQSamModel
from garasam.models.registry import family_of, sam_config
from garasam.models.robust_sam import RobustSamModel
from garasam.models.sam2_video import sam2_video_config

# the transformers class of each family (garasam.models.registry.FAMILIES)
MODEL_CLASSES: dict[str, type[PreTrainedModel]] = {
    "sam": SamModel,
    "hq": HQSamModel,
    "robust": RobustSamModel,
    "sam2": Sam2Model,
}

# Weights of the `tiny` type, trained by garasam/train/pretrain_tiny.py and shipped with the package.
TINY_WEIGHTS = Path(__file__).resolve().parent.parent / "assets" / "tiny_sam.safetensors"
# The bundled SAM 2.1 (image and video modules), trained by garasam/video/pretrain_tiny.py.
SAM2_TINY_WEIGHTS = TINY_WEIGHTS.with_name("sam2.1_tiny.safetensors")


def bundled_weights(model_type: str) -> Path | None:
    """The weights file shipped for `model_type` (None for the types without one); read at call
    time, so that tests can point the module's paths elsewhere."""
    return {"tiny": TINY_WEIGHTS, "sam2.1_tiny": SAM2_TINY_WEIGHTS}.get(model_type)


def build_sam(
    model_type: str,
    checkpoint: str | os.PathLike | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    pretrained: bool = True,
    video: bool = False,
) -> PreTrainedModel:
    """Build a SAM of `model_type` in eval mode, loading `checkpoint` if given.

    `video`: SAM 2.1 in video mode (transformers' `Sam2VideoModel`, its memory modules loaded from
    Meta's `.pt` or a `Sam2VideoModel` folder); only the SAM 2.1 types have one.

    `model_type` names the family and the encoder: `vit_b` (SAM), `hq_vit_b` (HQ-SAM, transformers'
    `SamHQModel` with a fixed decoder), `robust_vit_b` (RobustSAM, `garasam.models.robust_sam.RobustSamModel`); `tiny`,
    `hq_tiny`, `robust_tiny` are the CPU-sized versions (only `tiny` has bundled weights).

    `checkpoint` may be a Meta `.pth`, a transformers-layout state dict or safetensors file, or a
    save_pretrained folder (see `garasam.models.checkpoint`). Without one, `tiny` loads the bundled
    weights and the other types are initialised at random (reproducible under `torch.manual_seed`).
    `pretrained=False` skips the bundled tiny weights (pretraining starts from scratch).
    `dtype` defaults to float32, whatever the checkpoint stores. `model.garasam_checkpoint` holds
    the checkpoint's `identify_checkpoint` record (None for a random model).

    The network is laid out on the meta device first (no memory, no init) and then filled exactly
    once on `device`: transformers' constructor initialises every weight twice, single-threaded on
    the CPU (5 to 10 s for vit_h; this takes 0.35 s on 16 cores, 0.1 s on a GPU).
    """
    source = checkpoint
    if is_hub_id(checkpoint):  # facebook/sam-vit-base: the cached snapshot (garasam.models.hub)
        checkpoint = resolve_hub_id(str(checkpoint))
    config = sam_config(model_type)
    if video:
        if family_of(model_type) != "sam2":
            raise ConfigError(f"model type {model_type} has no video mode; SAM 2.1's types have (sam2.1_*)")
        config = sam2_video_config(model_type)
    bundled = bundled_weights(model_type)
    if checkpoint is None and bundled is not None and pretrained:
        if bundled.is_file():
            checkpoint = bundled
        else:
            warnings.warn(
                f"the bundled {model_type} SAM weights {bundled} are missing: using a randomly initialised model",
                stacklevel=2,
            )
    with torch.device("meta"):
        model = (Sam2VideoModel if video else MODEL_CLASSES[family_of(model_type)])(config)
    if dtype is not None:
        model.to(dtype)
    if checkpoint is None:
        model.to_empty(device=torch.device(device))
        _init_random(model)
    else:
        load_sam_weights(model, checkpoint, model_type, torch.device(device))
    _compute_buffers(model, torch.device(device))
    # Adapter folders and evaluation reports record which weights the backbone holds.
    model.garasam_checkpoint = None
    if checkpoint is not None:  # what it is, and where it came from (GaraSam.save_pretrained refers to it)
        reference = str(source) if is_hub_id(source) else str(Path(checkpoint).resolve())
        model.garasam_checkpoint = {**identify_checkpoint(checkpoint), "source": reference}
    return model.eval()


class _Builder:
    """`sam_model_registry[type](checkpoint=...)`: `build_sam` under segment_anything's call."""

    def __init__(self, model_type: str) -> None:
        self.model_type = model_type

    def __call__(self, checkpoint: str | os.PathLike | None = None) -> PreTrainedModel:
        return build_sam(self.model_type, checkpoint)

    def __repr__(self) -> str:
        return f"sam_model_registry[{self.model_type!r}]"


# segment_anything's registry ("default" is ViT-H there too), plus the bundled tiny SAM
sam_model_registry: dict[str, _Builder] = {
    "default": _Builder("vit_h"),
    **{model_type: _Builder(model_type) for model_type in ("vit_h", "vit_l", "vit_b", "tiny")},
}


def require_checkpoint(model_type: str, checkpoint: object, random_weights: bool) -> None:
    """A real SAM type without a checkpoint has random weights, and every mask it draws is meaningless:
    commands that segment or score refuse it unless the user asks for random weights (timing, tests).
    The tiny types with bundled weights need none (`tiny`, and `sam2.1_tiny` once its file exists;
    the HQ-SAM and RobustSAM versions of tiny have none)."""
    bundled = bundled_weights(model_type)
    if checkpoint is None and not random_weights and not (bundled is not None and bundled.is_file()):
        if bundled is not None:  # a bundled type whose file this version does not ship
            raise ConfigError(
                f"model type {model_type}: its bundled weights ({bundled.name}) are not in "
                "this version of garasam (train them with garasam pretrain-tiny-sam2); give --checkpoint PATH "
                "(e.g. Meta's sam2.1_hiera_tiny.pt with --model-type sam2.1_hiera_t), or add --random-weights "
                "to run it anyway (timing, tests)"
            )
        example = _OFFICIAL_EXAMPLES[family_of(model_type)]
        raise ConfigError(
            f"model type {model_type} needs its weights: give --checkpoint PATH (an official checkpoint, "
            f"e.g. {example}); without one the model is randomly initialised and its masks mean "
            "nothing. Add --random-weights to run it anyway (timing, tests)."
        )


_OFFICIAL_EXAMPLES = {
    "sam": "sam_vit_b_01ec64.pth",
    "hq": "sam_hq_vit_b.pth",
    "robust": "robustsam_checkpoint_b.pth",
    "sam2": "sam2.1_hiera_base_plus.pt",
}


def _init_random(model: PreTrainedModel) -> None:
    """Initialise every parameter once, reproducibly under `torch.manual_seed`.

    Same scheme as transformers' `_init_weights` (weights with std `initializer_range`, zero biases,
    unit LayerNorms, zero relative and absolute position embeddings), but drawn uniformly: a third of
    the cost of normal draws on a CPU, which matters for vit_h's 641M values. The random Fourier
    matrix of the prompt encoder gets SAM's own N(0, 1) (transformers draws it with std hidden_size/2).
    """
    bound = model.config.initializer_range * math.sqrt(3.0)  # uniform(-b, b) has std b / sqrt(3)
    draws: list[Callable[..., torch.Tensor]] = []
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear | nn.Conv2d | nn.ConvTranspose2d | nn.Embedding):
                draws.append(partial(module.weight.detach().uniform_, -bound, bound))
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.LayerNorm | nn.BatchNorm2d):
                module.weight.fill_(1.0)
                module.bias.zero_()
                if isinstance(module, nn.BatchNorm2d):
                    module.reset_running_stats()
            elif isinstance(
                module,
                SamPositionalEmbedding
                | SamHQPositionalEmbedding
                | Sam2PositionalEmbedding
                | Sam2VideoPositionalEmbedding,
            ):
                draws.append(module.positional_embedding.detach().normal_)
            elif isinstance(
                module, Sam2HieraDetModel | Sam2Model | Sam2VideoModel | Sam2VideoMemoryFuserCXBlock
            ):  # Hiera's position tables, SAM 2's no-memory embedding and memory tables, the fuser's scale
                for parameter in module.parameters(recurse=False):
                    draws.append(partial(parameter.detach().uniform_, -bound, bound))
            elif isinstance(
                module, SamVisionAttention | SamVisionEncoder | SamHQVisionAttention | SamHQVisionEncoder
            ):
                for parameter in module.parameters(recurse=False):
                    parameter.zero_()
            elif next(module.parameters(recurse=False), None) is not None:
                raise RuntimeError(f"build_sam has no random initialisation for {type(module).__name__}")
    _draw_in_parallel(draws, model.device)
    with torch.no_grad():
        shared = model.shared_image_embedding.positional_embedding
        model.prompt_encoder.shared_embedding.positional_embedding.copy_(shared)
    tie_positional_embedding(model)


def _draw_in_parallel(draws: list[Callable[..., torch.Tensor]], device: torch.device) -> None:
    """Run in-place random draws on torch's threads, each with its own generator.

    A CPU draw runs on one core, and vit_h's take seconds one after another. The generators are
    seeded from the global one in a fixed order, so the weights depend on `torch.manual_seed` only,
    not on the number of threads or their timing.
    """
    seeds = torch.randint(2**62, (len(draws),)).tolist()

    def draw(fill: Callable[..., torch.Tensor], seed: int) -> None:
        fill(generator=torch.Generator(device).manual_seed(seed))

    with ThreadPoolExecutor(max_workers=torch.get_num_threads()) as pool:
        list(pool.map(draw, draws, seeds))


def _compute_buffers(model: PreTrainedModel, device: torch.device) -> None:
    """Fill the buffers no checkpoint holds (non-persistent: computed from the config in the
    constructor), which a model laid out on the meta device lacks: SAM 2's memory-attention
    rotary frequencies and positions. Any other such buffer is an error here, not garbage later."""
    for name, module in model.named_modules():
        if isinstance(module, Sam2VideoVisionRotaryEmbedding):
            frequencies, _ = module.compute_axial_rope_parameters(module.config)
            module._buffers["inv_freq"] = frequencies.to(device)
            module._buffers["original_inv_freq"] = frequencies.clone().to(device)
        elif isinstance(module, Sam2VideoMemoryAttention):
            module._buffers["position_ids"] = module.precompute_positions(module.config).to(device)
        for buffer_name, buffer in module.named_buffers(recurse=False):
            if buffer.is_meta:
                raise RuntimeError(
                    f"build_sam cannot compute the buffer {name}.{buffer_name} of {type(module).__name__}"
                )
