"""Prediction on HQ-SAM, RobustSAM and SAM 2.1: the predictor, `garasam predict` and the web page."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from garasam.adapters import GaRAConfig, adapter_config, inject_adapters, save_adapters
from garasam.cli import main
from garasam.models import build_sam, save_sam
from garasam.models.features import decode
from garasam.predict import from_pretrained
from garasam.predict.web import UserPrompt, WebApp


@pytest.fixture(scope="module", params=["hq_tiny", "robust_tiny", "sam2.1_mini"])
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp(request.param) / f"{request.param}.safetensors"
    save_sam(build_sam(request.param), path)
    return request.param, path


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("img") / "scene.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (90, 140, 3), dtype=np.uint8)).save(path)
    return path


def test_the_predictor_gives_the_models_masks(family: tuple[str, Path], image: Path) -> None:
    model_type, checkpoint = family
    predictor = from_pretrained(checkpoint=checkpoint, model_type=model_type, device="cpu")
    pixels = np.asarray(Image.open(image))
    predictor.set_image(pixels)
    masks, scores, low_res = predictor.predict(
        box=np.array([10, 10, 100, 80]), multimask_output=False, return_logits=True
    )
    assert masks.shape == (1, 90, 140) and scores.shape == (1,)
    box = predictor.transform.apply_boxes(np.array([[10, 10, 100, 80]]), (90, 140))
    # kept with the image: the first global block's output (HQ-SAM, RobustSAM), the two fine maps (SAM 2)
    assert len(predictor.features.intermediate) == (2 if model_type.startswith("sam2") else 1)
    with torch.inference_mode():
        direct = decode(
            predictor.model,
            predictor.features,
            input_boxes=torch.as_tensor(box, dtype=torch.float32)[None],
            multimask_output=False,
        )
    assert np.allclose(low_res[0], direct.pred_masks[0, 0, 0].numpy(), atol=1e-4)


def test_predict_command_on_the_families(family: tuple[str, Path], image: Path, tmp_path: Path) -> None:
    model_type, checkpoint = family
    out = tmp_path / "out"
    argv = ["predict", str(image), "--model-type", model_type, "--checkpoint", str(checkpoint)]
    assert main([*argv, "--box", "10,10,100,80", "--box", "50,40,120,88", "--out", str(out)]) == 0
    result = json.loads((out / "scene.json").read_text())
    assert len(result["masks"]) == 2


def test_the_web_page_compares_the_family_with_gara_on_it(
    family: tuple[str, Path], image: Path, tmp_path: Path
) -> None:
    model_type, checkpoint = family
    adapted = inject_adapters(build_sam(model_type, checkpoint), GaRAConfig(r_low=4, r_high=8))
    save_adapters(adapted, tmp_path / "adapters")
    app = WebApp.create(checkpoint=checkpoint, adapters=tmp_path / "adapters", device="cpu")
    assert type(app.frozen.model) is type(app.gara.model) and adapter_config(app.gara.model) is not None
    family = {"hq_tiny": "HQ-SAM", "robust_tiny": "RobustSAM", "sam2.1_mini": "SAM 2.1"}[model_type]
    assert app.notes[0] == f"Backbone: {model_type} ({family}), {checkpoint.name}."  # shown on the page
    result = app.compare(np.asarray(Image.open(image)), UserPrompt(points=((60.0, 45.0),), labels=(1,)))
    assert result.frozen_mask.shape == result.gara_mask.shape == (90, 140)
    np.testing.assert_array_equal(result.frozen_mask, result.gara_mask)  # zero-initialised adapters
