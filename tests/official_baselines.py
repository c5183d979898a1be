"""The official HQ-SAM (`segment-anything-hq` 0.3) and RobustSAM (`robust-segment-anything` 1.0.0)
in the `tiny` configuration: the parity references for `hq_tiny` and `robust_tiny`.

Both packages are installed without their dependencies (the Makefile's install-test step): their
torchvision and timm imports serve code we never call (the automatic mask generator, the resize
transform, HQ-SAM's TinyViT encoder), and torchvision's wheel does not import beside our CPU torch.
Stand-ins take their place for the import only, as in `tests.official_sam`: functions that raise if
called, timm's `register_model` an identity decorator (it runs at import), its `DropPath` a class
that raises when built.
"""

from __future__ import annotations

import types
from functools import partial

import torch

from tests.official_sam import TINY, TORCHVISION_STAND_IN, missing, randomise, stand_ins


class _NoDropPath:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise AssertionError("timm.models.layers.DropPath built, but timm is only a test stand-in here")


_TIMM_STAND_IN: dict[str, dict[str, object]] = {
    "timm.models.layers": {"DropPath": _NoDropPath, "to_2tuple": None, "trunc_normal_": None},
    "timm.models.registry": {"register_model": lambda function: function},
}

with stand_ins({**TORCHVISION_STAND_IN, **(_TIMM_STAND_IN if missing("timm") else {})}):
    import robust_segment_anything.modeling as robust
    import segment_anything_hq.modeling as hq
    from robust_segment_anything import sam_model_registry as robust_registry
    from segment_anything_hq import sam_model_registry as hq_registry

__all__ = ["hq", "hq_registry", "official_tiny_hq", "official_tiny_robust", "robust", "robust_registry"]


def _parts(package: types.ModuleType) -> dict[str, object]:
    """The image encoder, prompt encoder and decoder transformer shared by both packages' SAMs."""
    embedding = TINY["image_size"] // TINY["patch_size"]
    return {
        "image_encoder": package.ImageEncoderViT(
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
        "prompt_encoder": package.PromptEncoder(
            embed_dim=TINY["out_chans"],
            image_embedding_size=(embedding, embedding),
            input_image_size=(TINY["image_size"], TINY["image_size"]),
            mask_in_chans=TINY["mask_in_chans"],
        ),
        "transformer": package.TwoWayTransformer(
            depth=TINY["decoder_depth"],
            embedding_dim=TINY["out_chans"],
            mlp_dim=TINY["decoder_mlp_dim"],
            num_heads=TINY["decoder_heads"],
        ),
    }


def _decoder_numbers() -> dict[str, object]:
    return {
        "num_multimask_outputs": 3,
        "transformer_dim": TINY["out_chans"],
        "iou_head_depth": TINY["iou_head_depth"],
        "iou_head_hidden_dim": TINY["iou_head_hidden_dim"],
        "vit_dim": TINY["embed_dim"],
    }


def official_tiny_hq() -> hq.Sam:
    """The official HQ-SAM with the `tiny` numbers, every tensor random."""
    parts = _parts(hq)
    decoder = hq.MaskDecoderHQ(transformer=parts.pop("transformer"), **_decoder_numbers())
    return randomise(hq.Sam(mask_decoder=decoder, **parts))


def official_tiny_robust() -> robust.Sam:
    """The official RobustSAM with the `tiny` numbers, every tensor random. Its decoder reads an
    `opt` object it never uses (the training script's options); any object will do."""
    parts = _parts(robust)
    decoder = robust.MaskDecoder(
        opt=types.SimpleNamespace(), transformer=parts.pop("transformer"), **_decoder_numbers()
    )
    return randomise(robust.Sam(mask_decoder=decoder, **parts))
