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

from tests.official_sam import (
    TINY,
    TORCHVISION_STAND_IN,
    missing,
    randomise,
    stand_ins,
    tiny_decoder_numbers,
    tiny_parts,
)


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


def official_tiny_hq() -> hq.Sam:
    """The official HQ-SAM with the `tiny` numbers, every tensor random."""
    parts = tiny_parts(hq)
    decoder = hq.MaskDecoderHQ(
        transformer=parts.pop("transformer"), vit_dim=TINY["embed_dim"], **tiny_decoder_numbers()
    )
    return randomise(hq.Sam(mask_decoder=decoder, **parts))


def official_tiny_robust() -> robust.Sam:
    """The official RobustSAM with the `tiny` numbers, every tensor random. Its decoder reads an
    `opt` object it never uses (the training script's options); any object will do."""
    parts = tiny_parts(robust)
    decoder = robust.MaskDecoder(
        opt=types.SimpleNamespace(),
        transformer=parts.pop("transformer"),
        vit_dim=TINY["embed_dim"],
        **tiny_decoder_numbers(),
    )
    return randomise(robust.Sam(mask_decoder=decoder, **parts))
