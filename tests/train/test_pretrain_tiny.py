"""`garasam pretrain-tiny`: a short run trains, writes loadable weights and a model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from garasam.models.build import build_sam
from garasam.train.pretrain_tiny import (
    MAX_POINTS,
    PretrainConfig,
    SceneStream,
    pretrain_tiny,
    prompted_outputs,
)


def test_short_run_writes_weights_and_card(tmp_path: Path) -> None:
    out = tmp_path / "tiny.safetensors"
    config = PretrainConfig(
        out=out, steps=3, batch_size=2, workers=0, eval_scenes=2, warmup_steps=1, device="cpu"
    )
    card = pretrain_tiny(config)

    assert card["training"]["steps_done"] == 3
    assert set(card["clear_iou_held_out_source"]) == {"point", "box"}
    assert json.loads(out.with_suffix(".json").read_text())["training"]["steps_done"] == 3
    trained = load_file(out)
    torch.manual_seed(config.seed)  # the run's own initialisation
    initial = build_sam("tiny", pretrained=False).state_dict()
    changed = [k for k, v in trained.items() if not torch.equal(v, initial[k])]
    assert any("mask_decoder" in k for k in changed) and any("vision_encoder" in k for k in changed)
    fourier = "shared_image_embedding.positional_embedding"
    assert torch.equal(trained[fourier], initial[fourier]), "SAM's Fourier matrix is a fixed buffer"
    reloaded = build_sam("tiny", out)
    assert torch.equal(
        reloaded.state_dict()["mask_decoder.iou_token.weight"], trained["mask_decoder.iou_token.weight"]
    )


@pytest.mark.parametrize(("num_points", "masks"), [(1, 3), (2, 1), (MAX_POINTS, 1)])
def test_only_a_single_point_gets_three_masks(num_points: int, masks: int) -> None:
    """SAM's recipe, which adapter training and evaluation rely on: token 0 serves boxes and multi-point prompts."""
    model = build_sam("tiny", pretrained=False)  # output shapes do not depend on the weights
    stream = SceneStream(seed=1, objects=2, image_size=model.config.vision_config.image_size)
    item = next(iter(stream))
    batch = {k: v[None] for k, v in item.items()}
    with torch.inference_mode():
        embeddings = model.get_image_embeddings(torch.zeros(1, 3, 256, 256))
        point_out, box_out = prompted_outputs(model, embeddings, batch, num_points)
    assert point_out.pred_masks.shape[:3] == (1, 2, masks)
    assert box_out.pred_masks.shape[:3] == (1, 2, 1)


def test_the_bundled_weights_are_replaced_only_when_named() -> None:
    """Issue 29, item 1: `garasam pretrain-tiny` without --out overwrote garasam/assets/tiny_sam.safetensors."""
    import argparse

    from garasam.commands import pretrain_tiny as command
    from garasam.models.build import TINY_WEIGHTS

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    package = TINY_WEIGHTS.resolve().parents[1]
    for out in (parser.parse_args([]).out, PretrainConfig().out):
        assert not out.resolve().is_relative_to(package), out
