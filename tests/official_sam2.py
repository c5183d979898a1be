"""The official SAM 2.1 (`sam2` 1.1.0, Apache-2.0) for parity tests: the released sizes from the
package's own hydra configs, and `sam2.1_mini` (our CPU-sized numbers) built from its modules.

`sam2` is installed without its dependencies (Makefile): torchvision serves its image transforms and
iopath the loading of pretrained Hiera weights, neither of which the tests call; a stand-in takes
iopath's place for the import (functions that raise if called), as in `tests.official_sam`.
"""

from __future__ import annotations

import torch

from tests.official_sam import missing, randomise, stand_ins

with stand_ins({"iopath.common.file_io": {"g_pathmgr": None}} if missing("iopath") else {}):
    import sam2  # noqa: F401  (registers the package's hydra configs)
    from hydra import compose
    from hydra.utils import instantiate
    from sam2.modeling.backbones.hieradet import Hiera
    from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
    from sam2.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer
    from sam2.modeling.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine
    from sam2.modeling.sam.transformer import RoPEAttention
    from sam2.modeling.sam2_base import SAM2Base
    from sam2.sam2_video_predictor import SAM2VideoPredictor

__all__ = ["MINI_FEATURE_SIZES", "official_mini_sam2", "official_sam2", "official_sam2_features"]

MINI_FEATURE_SIZES = [(64, 64), (32, 32), (16, 16)]  # the backbone maps of a 256 px input, finest first


def official_sam2(size: str, video: bool = False) -> SAM2Base:
    """A released SAM 2.1 (`t`, `s`, `b+`, `l`) from the package's config, randomly initialised;
    `video`: the `SAM2VideoPredictor` that `build_sam2_video_predictor` makes of it."""
    overrides = (
        [
            "++model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor",
            "++model.binarize_mask_from_pts_for_mem_enc=true",
            "++model.fill_hole_area=8",
        ]
        if video
        else []
    )
    config = compose(config_name=f"configs/sam2.1/sam2.1_hiera_{size}.yaml", overrides=overrides)
    return instantiate(config.model, _recursive_=True)


def _rope(**extra: object) -> RoPEAttention:
    return RoPEAttention(
        rope_theta=10000.0,
        feat_sizes=[16, 16],
        embedding_dim=64,
        num_heads=1,
        downsample_rate=1,
        dropout=0.0,
        **extra,
    )


def official_mini_sam2(video: bool = False) -> SAM2Base:
    """`sam2.1_mini` in the official code: Meta's SAM 2.1 settings (sam2.1_hiera_t.yaml) with the
    encoder, neck and memory shrunk, every tensor random (see `tests.official_sam.randomise`).
    `video`: as `build_sam2_video_predictor` makes it (a `SAM2VideoPredictor` that binarises the
    masks of prompted frames for the memory and fills small holes; the hole filling needs the
    package's CUDA extension and is skipped without it, with a warning)."""
    trunk = Hiera(
        embed_dim=32,
        num_heads=1,
        stages=[1, 1, 2, 1],
        global_att_blocks=[3],
        window_pos_embed_bkg_spatial_size=[7, 7],
        window_spec=(8, 4, 14, 7),
    )
    neck = FpnNeck(
        position_encoding=PositionEmbeddingSine(num_pos_feats=64, normalize=True, temperature=10000),
        d_model=64,
        backbone_channel_list=[256, 128, 64, 32],
        fpn_top_down_levels=[2, 3],
        fpn_interp_model="nearest",
    )
    layer = MemoryAttentionLayer(
        activation="relu",
        dim_feedforward=64,
        dropout=0.0,
        pos_enc_at_attn=False,
        self_attention=_rope(),
        d_model=64,
        pos_enc_at_cross_attn_keys=True,
        pos_enc_at_cross_attn_queries=False,
        cross_attention=_rope(rope_k_repeat=True, kv_in_dim=64),
    )
    memory_encoder = MemoryEncoder(
        out_dim=64,
        in_dim=64,
        position_encoding=PositionEmbeddingSine(num_pos_feats=64, normalize=True, temperature=10000),
        mask_downsampler=MaskDownSampler(embed_dim=64, kernel_size=3, stride=2, padding=1),
        fuser=Fuser(
            layer=CXBlock(dim=64, kernel_size=7, padding=3, layer_scale_init_value=1e-6, use_dwconv=True),
            num_layers=1,
        ),
    )
    video_settings = {"binarize_mask_from_pts_for_mem_enc": True, "fill_hole_area": 8} if video else {}
    model = (SAM2VideoPredictor if video else SAM2Base)(
        image_encoder=ImageEncoder(trunk=trunk, neck=neck, scalp=1),
        memory_attention=MemoryAttention(d_model=64, pos_enc_at_input=True, layer=layer, num_layers=1),
        memory_encoder=memory_encoder,
        image_size=256,
        sigmoid_scale_for_mem_enc=20.0,
        sigmoid_bias_for_mem_enc=-10.0,
        use_mask_input_as_output_without_sam=True,
        directly_add_no_mem_embed=True,
        no_obj_embed_spatial=True,
        use_high_res_features_in_sam=True,
        multimask_output_in_sam=True,
        iou_prediction_use_sigmoid=True,
        use_obj_ptrs_in_encoder=True,
        add_tpos_enc_to_obj_ptrs=True,
        proj_tpos_enc_in_obj_ptrs=True,
        use_signed_tpos_enc_to_obj_ptrs=True,
        only_obj_ptrs_in_the_past_for_eval=True,
        pred_obj_scores=True,
        pred_obj_scores_mlp=True,
        fixed_no_obj_ptr=True,
        multimask_output_for_tracking=True,
        use_multimask_token_for_obj_ptr=True,
        multimask_min_pt_num=0,
        multimask_max_pt_num=1,
        use_mlp_for_obj_ptr_proj=True,
        sam_mask_decoder_extra_args={
            "dynamic_multimask_via_stability": True,
            "dynamic_multimask_stability_delta": 0.05,
            "dynamic_multimask_stability_thresh": 0.98,
        },
        **video_settings,
    )
    return randomise(model)


def official_sam2_features(model: SAM2Base, pixels: torch.Tensor) -> list[torch.Tensor]:
    """The official image path as `SAM2ImagePredictor.set_image` runs it: backbone, the no-memory
    embedding on the coarsest map, maps [B, C, h, w] finest first."""
    backbone = model.forward_image(pixels)
    _, maps, _, _ = model._prepare_backbone_features(backbone)
    maps[-1] = maps[-1] + model.no_mem_embed
    batch = pixels.shape[0]
    return [
        m.permute(1, 2, 0).view(batch, -1, *size) for m, size in zip(maps, MINI_FEATURE_SIZES, strict=True)
    ]
