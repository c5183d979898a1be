"""SAM 2.1 in video mode: transformers' `Sam2VideoModel` (the image path of `garasam.models.sam2`
plus the memory attention, the memory encoder and the object pointers) for our SAM 2.1 types.

The four released sizes share one memory design (Meta's `sam2.1_hiera_*.yaml`: 4 memory-attention
layers of width 256, a 64-channel memory, 7 memory frames, 16 object pointers); `sam2.1_mini` keeps
the design and shrinks it (1 layer, narrower feed-forward and fuser) so that video tests run on a CPU,
and the bundled `sam2.1_tiny` has 2 memory-attention layers.
transformers fixes the memory's width at 64 (the cross-attention's key/value input), so the mini
keeps that too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import Sam2Config, Sam2Model, Sam2VideoConfig, Sam2VideoModel

from garasam.models.sam2 import SAM2_TYPES, sam2_config


@dataclass(frozen=True)
class MemorySpec:
    """The numbers of SAM 2's video modules."""

    attention_layers: int = 4
    attention_feed_forward: int = 2048
    fuser_layers: int = 2
    fuser_intermediate: int = 1024
    memory_frames: int = 7  # Meta's num_maskmem: the conditioning frame and the 6 latest
    object_pointers: int = 16


MEMORY_SPECS: dict[str, MemorySpec] = {
    **{model_type: MemorySpec() for model_type in SAM2_TYPES},
    "sam2.1_mini": MemorySpec(
        attention_layers=1, attention_feed_forward=64, fuser_layers=1, fuser_intermediate=256
    ),
    "sam2.1_tiny": MemorySpec(
        attention_layers=2, attention_feed_forward=256, fuser_layers=1, fuser_intermediate=256
    ),
}


def sam2_video_config(model_type: str) -> Sam2VideoConfig:
    """transformers' `Sam2VideoConfig` for a SAM 2.1 model type, with SAM 2.1's video settings
    (Meta's `sam2.1_hiera_*.yaml`, which transformers' defaults follow)."""
    image = sam2_config(model_type)
    spec, memory = SAM2_TYPES[model_type], MEMORY_SPECS[model_type]
    width = spec.fpn_width
    return Sam2VideoConfig(
        vision_config=image.vision_config.to_dict(),
        prompt_encoder_config=image.prompt_encoder_config.to_dict(),
        mask_decoder_config=image.mask_decoder_config.to_dict(),
        image_size=spec.image_size,
        num_maskmem=memory.memory_frames,
        max_object_pointers_in_encoder=memory.object_pointers,
        memory_attention_hidden_size=width,
        memory_attention_num_layers=memory.attention_layers,
        memory_attention_feed_forward_hidden_size=memory.attention_feed_forward,
        memory_attention_rope_feat_sizes=[spec.image_size // 16] * 2,
        memory_encoder_hidden_size=width,
        mask_downsampler_embed_dim=width,
        memory_fuser_num_layers=memory.fuser_layers,
        memory_fuser_embed_dim=width,
        memory_fuser_intermediate_dim=memory.fuser_intermediate,
    )


def image_view(model: Sam2VideoModel) -> Sam2Model:
    """The image path of a video model as a `Sam2Model` (one image in, masks out) that shares every
    module and parameter with it: training or reading one is training or reading the other."""
    view = getattr(model, "_garasam_image_view", None)
    if view is None:
        with torch.device("meta"):  # laid out only: every part is replaced by the video model's own
            view = Sam2Model(Sam2Config(**{k: getattr(model.config, k).to_dict() for k in _IMAGE_PARTS}))
        for name in ("vision_encoder", "prompt_encoder", "mask_decoder", "shared_image_embedding"):
            setattr(view, name, getattr(model, name))
        view.no_memory_embedding = model.no_memory_embedding
        object.__setattr__(model, "_garasam_image_view", view)  # not a submodule: no second state-dict copy
    return view


_IMAGE_PARTS = ("vision_config", "prompt_encoder_config", "mask_decoder_config")
