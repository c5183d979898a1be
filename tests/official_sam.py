"""The official `segment_anything` SAM in the `tiny` configuration: our parity reference.

`import segment_anything` imports torchvision at package import time, for the automatic mask
generator (`torchvision.ops.boxes.batched_nms`, `box_area`) and the predictor's resize transform
(`torchvision.transforms.functional.resize`, `to_pil_image`). torchvision is not installed here:
the PyPI wheel is built against another torch and does not import beside our CPU torch. When it is
missing, a stand-in whose functions raise is put in `sys.modules` for the duration of that import
only: any test reaching those functions fails instead of comparing against a fake, and transformers,
which probes for torchvision to pick image processors, still sees it missing afterwards. The tests
use only `segment_anything.modeling` and `SamPredictor.set_torch_image`, which never call them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
from collections.abc import Iterator
from functools import partial

import torch

__all__ = [
    "PIXEL_MEAN",
    "PIXEL_STD",
    "TINY",
    "TORCHVISION_STAND_IN",
    "ImageEncoderViT",
    "Sam",
    "SamPredictor",
    "missing",
    "official_tiny_sam",
    "randomise",
    "sam_model_registry",
    "stand_ins",
    "tiny_decoder_numbers",
    "tiny_parts",
]

_TORCHVISION_USES: dict[str, dict[str, object]] = {
    "torchvision.ops.boxes": {"batched_nms": None, "box_area": None},
    "torchvision.transforms.functional": {"resize": None, "to_pil_image": None},
}


def _unavailable(name: str, *args: object, **kwargs: object) -> None:
    raise AssertionError(f"{name} called, but it is only a test stand-in here")


@contextlib.contextmanager
def stand_ins(uses: dict[str, dict[str, object]]) -> Iterator[None]:
    """Modules that are not installed, put in `sys.modules` for one import only.

    `uses` maps a module to its attributes: None makes a function that raises when called, anything
    else is set as given (a decorator that must run at import time, a class to subclass).
    """
    added: list[str] = []
    for module_name, attributes in uses.items():
        parts = module_name.split(".")
        for depth in range(1, len(parts) + 1):
            name = ".".join(parts[:depth])
            if name not in sys.modules:
                sys.modules[name] = types.ModuleType(name)
                added.append(name)
                if depth > 1:
                    setattr(sys.modules[".".join(parts[: depth - 1])], parts[depth - 1], sys.modules[name])
        for attribute, value in attributes.items():
            stand_in = partial(_unavailable, f"{module_name}.{attribute}") if value is None else value
            setattr(sys.modules[module_name], attribute, stand_in)
    try:
        yield
    finally:
        for name in added:
            del sys.modules[name]


def missing(module: str) -> bool:
    """True when `module` cannot be imported for real (then a stand-in is used)."""
    return module not in sys.modules and importlib.util.find_spec(module) is None


TORCHVISION_STAND_IN = _TORCHVISION_USES if missing("torchvision") else {}
with stand_ins(TORCHVISION_STAND_IN):
    import segment_anything.modeling
    from segment_anything import SamPredictor
    from segment_anything.build_sam import sam_model_registry
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, Sam

# The `tiny` architecture written out literally, so that the parity test also checks that
# garasam's transformers config describes the same network (test_official_parity.py).
TINY = {
    "embed_dim": 160,
    "depth": 6,
    "num_heads": 4,
    "global_attn_indexes": (2, 5),
    "window_size": 8,
    "image_size": 256,
    "patch_size": 16,
    "out_chans": 64,
    "mask_in_chans": 16,
    "decoder_depth": 2,
    "decoder_mlp_dim": 256,
    "decoder_heads": 4,
    "iou_head_depth": 3,
    "iou_head_hidden_dim": 64,
}
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


def tiny_parts(modeling: types.ModuleType) -> dict[str, torch.nn.Module]:
    """The image encoder, prompt encoder and decoder transformer of a `segment_anything`-style
    `modeling` package (SAM's, HQ-SAM's, RobustSAM's) with the `tiny` numbers."""
    embedding = TINY["image_size"] // TINY["patch_size"]
    return {
        "image_encoder": modeling.ImageEncoderViT(
            img_size=TINY["image_size"],
            patch_size=TINY["patch_size"],
            embed_dim=TINY["embed_dim"],
            depth=TINY["depth"],
            num_heads=TINY["num_heads"],
            mlp_ratio=4,
            out_chans=TINY["out_chans"],
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=TINY["window_size"],
            global_attn_indexes=TINY["global_attn_indexes"],
        ),
        "prompt_encoder": modeling.PromptEncoder(
            embed_dim=TINY["out_chans"],
            image_embedding_size=(embedding, embedding),
            input_image_size=(TINY["image_size"], TINY["image_size"]),
            mask_in_chans=TINY["mask_in_chans"],
        ),
        "transformer": modeling.TwoWayTransformer(
            depth=TINY["decoder_depth"],
            embedding_dim=TINY["out_chans"],
            mlp_dim=TINY["decoder_mlp_dim"],
            num_heads=TINY["decoder_heads"],
        ),
    }


def tiny_decoder_numbers() -> dict[str, int]:
    """The mask decoder's `tiny` numbers, as the official constructors name them."""
    return {
        "num_multimask_outputs": 3,
        "transformer_dim": TINY["out_chans"],
        "iou_head_depth": TINY["iou_head_depth"],
        "iou_head_hidden_dim": TINY["iou_head_hidden_dim"],
    }


def official_tiny_sam() -> Sam:
    """The official SAM with the `tiny` numbers and every tensor random (zero-init ones included),
    so that a key that was dropped or mis-mapped during conversion changes the outputs.

    The std is twice 1/sqrt(fan_in) so that attention is far from uniform: then replacing any single
    tensor moves the outputs by more than 10x the parity tolerance (measured for all 231 tensors but
    the attention key biases, which softmax ignores by construction).
    """
    parts = tiny_parts(segment_anything.modeling)
    decoder = MaskDecoder(transformer=parts.pop("transformer"), **tiny_decoder_numbers())
    sam = Sam(mask_decoder=decoder, pixel_mean=list(PIXEL_MEAN), pixel_std=list(PIXEL_STD), **parts)
    return randomise(sam)


def randomise(model: torch.nn.Module) -> torch.nn.Module:
    """Every floating-point tensor of `model` drawn with std 2/sqrt(fan_in), in eval mode; batch-norm
    variances drawn positive (0.5 to 1.5) so that they stay variances."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
                continue
            fan_in = tensor[0].numel() if tensor.ndim > 1 else 10
            tensor.normal_(0.0, 2.0 * fan_in**-0.5)
    return model.eval()
