"""The bundled SAM 2.1's pretraining: both stages run and write a whole video model with its card;
the image path of a video model is a view that shares its parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from garasam.cli import main
from garasam.models import build_sam
from garasam.models.sam2_video import image_view


def test_the_image_view_shares_every_parameter() -> None:
    model = build_sam("sam2.1_tiny", video=True, pretrained=False)
    view = image_view(model)
    shared = {id(p) for p in model.parameters()}
    assert all(id(p) in shared for p in view.parameters())
    assert len(list(view.parameters())) == len(
        [
            n
            for n, _ in model.named_parameters()
            if not n.startswith(
                (
                    "memory",
                    "object_pointer",
                    "temporal",
                    "mask_downsample",
                    "no_memory_positional",
                    "no_object",
                    "occlusion",
                )
            )
        ]
    )
    assert image_view(model) is view and "_garasam_image_view" not in dict(model.named_modules())


def test_both_stages_run_and_chain(tmp_path: Path, capsys) -> None:
    images, video = tmp_path / "images.safetensors", tmp_path / "video.safetensors"
    base = [
        "pretrain-tiny-sam2",
        "--max-steps",
        "2",
        "--batch-size",
        "1",
        "--eval-items",
        "1",
        "--warmup-steps",
        "1",
    ]
    assert main([*base, "--stage", "images", "--out", str(images)]) == 0
    assert (
        main(
            [
                *base,
                "--stage",
                "video",
                "--checkpoint",
                str(images),
                "--out",
                str(video),
                "--clip-frames",
                "3",
            ]
        )
        == 0
    )
    card = json.loads(video.with_suffix(".json").read_text())
    assert (
        card["stage"] == "video"
        and card["training"]["steps_done"] == 2
        and set(card["held_out"]) == {"box_iou", "tracking_iou"}
    )
    first, second = build_sam("sam2.1_tiny", images, video=True), build_sam("sam2.1_tiny", video, video=True)
    moved = [k for k, v in first.state_dict().items() if not torch.equal(v, second.state_dict()[k])]
    assert any(k.startswith("memory_attention") for k in moved)  # the video stage trains the memory
    assert "pretrain-tiny-sam2 (video): 2 steps" in capsys.readouterr().out


def test_the_images_stage_starts_from_the_tiny_sams_decoder() -> None:
    """Every prompt-encoder and decoder tensor of the bundled tiny SAM lands in SAM 2.1's under its
    name there, and the high-resolution projections start at zero (the seeded decoder reads the
    coarse map only, as the tiny SAM's does)."""
    from garasam.video.pretrain_tiny import seed_from_tiny_sam

    model, tiny = build_sam("sam2.1_tiny", video=True, pretrained=False), build_sam("tiny")
    copied = seed_from_tiny_sam(model, tiny)
    source = {k: v for k, v in tiny.state_dict().items() if not k.startswith("vision_encoder.")}
    assert copied == len(source)
    ours = model.state_dict()
    decoder = tiny.mask_decoder.transformer.layers[1]
    assert torch.equal(ours["mask_decoder.transformer.layers.1.mlp.proj_out.weight"], decoder.mlp.lin2.weight)
    assert torch.equal(
        ours["mask_decoder.transformer.layers.1.cross_attn_image_to_token.o_proj.bias"],
        decoder.cross_attn_image_to_token.out_proj.bias,
    )
    assert torch.equal(
        ours["prompt_encoder.point_embed.weight"][3], tiny.prompt_encoder.point_embed[3].weight[0]
    )
    assert torch.equal(
        ours["shared_image_embedding.positional_embedding"], tiny.shared_image_embedding.positional_embedding
    )
    assert all(not ours[f"mask_decoder.conv_s{i}.{p}"].any() for i in (0, 1) for p in ("weight", "bias"))


def test_seeding_refuses_a_decoder_of_another_shape() -> None:
    from garasam.video.pretrain_tiny import seed_from_tiny_sam

    with pytest.raises(ValueError, match="has no counterpart in sam2.1_tiny"):
        seed_from_tiny_sam(
            build_sam("sam2.1_tiny", video=True, pretrained=False), build_sam("hq_tiny")
        )  # HQ-SAM: tensors SAM 2.1 lacks
