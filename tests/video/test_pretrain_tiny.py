"""The bundled SAM 2.1's pretraining: both stages run and write a whole video model with its card;
the image path of a video model is a view that shares its parameters."""

from __future__ import annotations

import json
from pathlib import Path

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
