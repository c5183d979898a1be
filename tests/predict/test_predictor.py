"""GaraSamPredictor against the official SamPredictor, the plain model path and itself (batched)."""

import copy
import json

import numpy as np
import pytest
import torch

from garasam.adapters import GaRAConfig, LoRAConfig, inject_adapters, save_adapters
from garasam.assembly import resolve_model_type
from garasam.errors import CheckpointError, ConfigError, DataError
from garasam.fast.cuda_graphs import EncoderGraphs
from garasam.models import build_sam, save_sam
from garasam.predict import GaraSamPredictor, from_pretrained, gate_table
from tests.official_sam import SamPredictor, official_tiny_sam

PROMPTS = [
    {"point_coords": np.array([[60.0, 45.0]]), "point_labels": np.array([1])},
    {"box": np.array([25.0, 15.0, 105.0, 75.0])},
    {
        "point_coords": np.array([[60.0, 45.0], [5.0, 5.0]]),
        "point_labels": np.array([1, 0]),
        "box": np.array([25.0, 15.0, 105.0, 75.0]),
        "multimask_output": False,
    },
]


def test_matches_the_official_predictor(tmp_path, image) -> None:
    torch.manual_seed(0)
    sam = official_tiny_sam().eval()
    torch.save(sam.state_dict(), tmp_path / "tiny_meta.pth")
    ours = GaraSamPredictor(build_sam("tiny", tmp_path / "tiny_meta.pth"))
    official = SamPredictor(sam)
    ours.set_image(image)
    # The official set_image resizes with torchvision, absent here; SamTransform.apply_image is the
    # same PIL bilinear resize, so the official predictor gets the identical resized image.
    official.set_torch_image(ours.transform.resize_image(image)[None].float(), image.shape[:2])
    torch.testing.assert_close(
        ours.get_image_embedding(), official.get_image_embedding(), atol=1e-4, rtol=1e-4
    )
    for prompt in PROMPTS:
        logits, scores, low_res = ours.predict(**prompt, return_logits=True)
        ref_logits, ref_scores, ref_low_res = official.predict(**prompt, return_logits=True)
        assert logits.shape == ref_logits.shape == (3 if prompt.get("multimask_output", True) else 1, 90, 140)
        np.testing.assert_allclose(logits, ref_logits, atol=1e-4)
        np.testing.assert_allclose(scores, ref_scores, atol=1e-4)
        np.testing.assert_allclose(low_res, ref_low_res, atol=1e-4)
        masks, _, _ = ours.predict(**prompt)
        assert masks.dtype == bool
        decided = np.abs(ref_logits) > 1e-3
        np.testing.assert_array_equal(masks[decided], (ref_logits > 0)[decided])
        # a previous low-res prediction fed back as mask_input, as in SAM's interactive loop
        _, scores_again, _ = ours.predict(**prompt, mask_input=low_res[:1])
        _, ref_scores_again, _ = official.predict(**prompt, mask_input=ref_low_res[:1])
        np.testing.assert_allclose(scores_again, ref_scores_again, atol=1e-4)


def test_zero_initialised_gara_gives_exactly_the_plain_masks(tiny_sam, image) -> None:
    gara = inject_adapters(copy.deepcopy(tiny_sam), GaRAConfig(r_low=4, r_high=16))
    plain, adapted = GaraSamPredictor(tiny_sam), GaraSamPredictor(gara)
    plain.set_image(image)
    adapted.set_image(image)
    assert torch.equal(plain.get_image_embedding(), adapted.get_image_embedding())
    for prompt in PROMPTS:
        for ours, reference in zip(adapted.predict(**prompt), plain.predict(**prompt), strict=True):
            np.testing.assert_array_equal(ours, reference)


def test_predict_torch_batches_equal_single_prompts(tiny_sam, image) -> None:
    predictor = GaraSamPredictor(tiny_sam)
    predictor.set_image(image)
    boxes = np.array([[25.0, 15.0, 105.0, 75.0], [0.0, 0.0, 50.0, 40.0], [70.0, 30.0, 139.0, 89.0]])
    batch = torch.as_tensor(predictor.transform.apply_boxes(boxes, image.shape[:2]), dtype=torch.float32)
    logits, scores, low_res = predictor.predict_torch(None, None, boxes=batch, return_logits=True)
    assert logits.shape == (3, 3, 90, 140) and scores.shape == (3, 3) and low_res.shape == (3, 3, 64, 64)
    for i, box in enumerate(boxes):
        single_logits, single_scores, single_low_res = predictor.predict(box=box, return_logits=True)
        np.testing.assert_allclose(logits[i].numpy(), single_logits, atol=1e-5)
        np.testing.assert_allclose(scores[i].numpy(), single_scores, atol=1e-5)
        np.testing.assert_allclose(low_res[i].numpy(), single_low_res, atol=1e-5)
    # point sets of equal length, one per prompt, with a negative click each
    points = np.array([[[60.0, 45.0], [5.0, 5.0]], [[10.0, 80.0], [120.0, 10.0]]])
    labels = np.array([[1, 0], [1, 0]])
    coords = torch.as_tensor(predictor.transform.apply_coords(points, image.shape[:2]), dtype=torch.float32)
    masks, scores, _ = predictor.predict_torch(coords, torch.as_tensor(labels), multimask_output=False)
    for i in range(2):
        single_masks, single_scores, _ = predictor.predict(points[i], labels[i], multimask_output=False)
        np.testing.assert_allclose(scores[i].numpy(), single_scores, atol=1e-5)
        assert (masks[i].numpy() != single_masks).mean() < 1e-3  # at most a pixel flips at logit ~0


def test_bgr_input_and_image_state(tiny_sam, image) -> None:
    predictor = GaraSamPredictor(tiny_sam)
    with pytest.raises(RuntimeError, match="set an image"):
        predictor.predict(box=np.array([1, 1, 20, 20]))
    predictor.set_image(image)
    rgb = predictor.get_image_embedding().clone()
    predictor.set_image(np.ascontiguousarray(image[..., ::-1]), image_format="BGR")
    assert torch.equal(predictor.get_image_embedding(), rgb)
    assert predictor.original_size == (90, 140) and predictor.input_size == (165, 256)
    predictor.reset_image()
    assert not predictor.is_image_set
    with pytest.raises(RuntimeError):
        predictor.get_image_embedding()
    with pytest.raises(DataError, match="H x W x 3 uint8"):
        predictor.set_image(image.astype(np.float32))
    with pytest.raises(ConfigError, match="image_format"):
        predictor.set_image(image, image_format="HSV")


def test_gate_summary_per_image(tiny_sam, image) -> None:
    plain = GaraSamPredictor(copy.deepcopy(tiny_sam))
    plain.set_image(image)
    assert plain.gate_summary() is None
    lora = GaraSamPredictor(inject_adapters(copy.deepcopy(tiny_sam), LoRAConfig(rank=4)))
    lora.set_image(image)
    assert lora.gate_summary() is None  # LoRA has no gates
    gara = GaraSamPredictor(inject_adapters(tiny_sam, GaRAConfig(r_low=4, r_high=16)))
    gara.set_image(image)
    summary = gara.gate_summary()
    assert [s.name for s in summary] == [f"vision_encoder.layers.{i}.attn.qkv" for i in range(6)]
    rows = gate_table(summary)
    assert [row["block"] for row in rows] == list(range(6))
    assert all(0 <= row["mean_active_rank"] <= 16 and 0 <= row["high_fraction"] <= 1 for row in rows)
    # windowed blocks gate each 8x8-token window (4 windows of the 16x16 tokens), global blocks the image
    assert [s.rows_per_image for s in summary] == [4, 4, 1, 4, 4, 1]
    json.dumps(rows)


def test_from_pretrained_builds_sam_and_loads_adapters(tmp_path, tiny_sam, image) -> None:
    save_sam(tiny_sam, tmp_path / "tiny.safetensors")
    inject_adapters(tiny_sam, GaRAConfig(r_low=4, r_high=8))
    with torch.no_grad():
        for name, parameter in tiny_sam.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    save_adapters(tiny_sam, tmp_path / "adapters")
    # no model type given: it comes from the adapter folder's backbone record
    loaded = from_pretrained(tmp_path / "adapters", checkpoint=tmp_path / "tiny.safetensors", device="cpu")
    reference = GaraSamPredictor(tiny_sam)
    loaded.set_image(image)
    reference.set_image(image)
    # the same weights, reloaded: equal up to float rounding of a differently laid out model
    for ours, expected in zip(
        loaded.predict(**PROMPTS[1], return_logits=True),
        reference.predict(**PROMPTS[1], return_logits=True),
        strict=True,
    ):
        np.testing.assert_allclose(ours, expected, atol=1e-5)
    assert gate_table(loaded.gate_summary()) == gate_table(reference.gate_summary())
    with pytest.raises(CheckpointError, match="made for a tiny backbone, but the model is vit_b"):
        from_pretrained(tmp_path / "adapters", model_type="vit_b")
    with pytest.raises(CheckpointError, match="no adapter_config.json"):
        from_pretrained(tmp_path)


def test_model_type_resolution(tmp_path) -> None:
    assert resolve_model_type(None, None, None) == "tiny"
    assert resolve_model_type(None, "weights/sam_vit_l_0b3195.pth", None) == "vit_l"
    assert resolve_model_type(None, "weights/sam_vit_l_0b3195.pth", "vit_h") == "vit_h"
    with pytest.raises(ConfigError, match="cannot tell the model type"):
        resolve_model_type(None, "weights/model.pth", None)
    with pytest.raises(ConfigError, match="unknown model type"):
        resolve_model_type(None, None, "vit_x")


def test_fast_path_predicts_the_same_masks(image) -> None:
    torch.manual_seed(0)
    reference = from_pretrained(device="cpu", fast=False)
    torch.manual_seed(0)
    fast = from_pretrained(device="cpu", fast=True)  # bf16 encoder, folded rel-pos attention
    assert isinstance(fast.model.vision_encoder.graphs, EncoderGraphs)  # CUDA graphs once a shape repeats
    for predictor in (reference, fast):
        predictor.set_image(image)
    box = {"box": np.array([25.0, 15.0, 105.0, 75.0]), "multimask_output": False}
    (ref_mask, ref_score, _), (fast_mask, fast_score, _) = reference.predict(**box), fast.predict(**box)
    assert (ref_mask == fast_mask).mean() > 0.98
    assert abs(float(ref_score[0]) - float(fast_score[0])) < 0.05


# -- the Python API checks what the CLI checks (issue 29: shapes, dtypes, finite values) ---------------
NAN, INF = float("nan"), float("inf")
BAD_PREDICT = [
    ({"point_coords": [[NAN, 3.0]], "point_labels": [1]}, "point_coords holds non-finite values"),
    ({"point_coords": "3,3", "point_labels": [1]}, "point_coords: expected numbers, got str"),
    ({"point_coords": [[3.0, 3.0]]}, "point_labels must be given with point_coords"),
    ({"point_coords": [[3.0, 3.0]], "point_labels": [5]}, "point_labels must be 1 .*, 0 .* or -1"),
    ({"point_coords": [[3.0, 3.0]], "point_labels": [NAN]}, "point_labels holds non-finite values"),
    ({"box": [0, 0, INF, 10]}, "box holds non-finite values"),
    ({"box": [10, 10, 0, 0]}, r"expected x0 < x1 and y0 < y1"),
    ({"box": [5, 5, 5, 20]}, r"expected x0 < x1 and y0 < y1"),
    ({"box": [0, 0, 10, 10], "mask_input": np.zeros((1, 10, 10))}, r"mask_input: expected \[1, 64, 64\]"),
    ({"box": [0, 0, 10, 10], "mask_input": np.full((1, 64, 64), NAN)}, "mask_input holds non-finite"),
    ({"box": [0, 0, 10, 10], "multimask_output": "yes"}, "multimask_output must be True or False"),
    ({"box": [0, 0, 10, 10], "return_logits": 1}, "return_logits must be True or False"),
]


@pytest.mark.parametrize("kwargs, message", BAD_PREDICT)
def test_predict_refuses_what_the_cli_refuses(tiny_sam, image, kwargs, message) -> None:
    """Before: NaN points, inverted boxes and labels of 5 gave masks; a wrong mask_input or a string
    of coordinates ended in a torch or NumPy traceback."""
    predictor = GaraSamPredictor(tiny_sam)
    predictor.set_image(image)
    with pytest.raises(DataError, match=message):
        predictor.predict(**kwargs)


BAD_PREDICT_TORCH = [
    ({"point_coords": torch.tensor([[[NAN, 1.0]]]), "point_labels": torch.tensor([[1]])}, "non-finite"),
    (
        {"point_coords": torch.tensor([[1.0, 1.0]]), "point_labels": torch.tensor([1])},
        r"expected \[B, N, 2\]",
    ),
    ({"point_coords": [[[1.0, 1.0]]], "point_labels": torch.tensor([[1]])}, "expected a torch.Tensor"),
    ({"point_coords": torch.tensor([[[1.0, 1.0]]]), "point_labels": torch.tensor([[1, 1]])}, "do not match"),
    (
        {"point_coords": None, "point_labels": None, "boxes": torch.tensor([[0, 0, 10.0]])},
        r"expected \[B, 4\]",
    ),
    (
        {"point_coords": None, "point_labels": None, "mask_input": torch.zeros(1, 1, 8, 8)},
        r"mask_input: expected \[B, 1, 64, 64\]",
    ),
]


@pytest.mark.parametrize("kwargs, message", BAD_PREDICT_TORCH)
def test_predict_torch_checks_shapes_and_values(tiny_sam, image, kwargs, message) -> None:
    predictor = GaraSamPredictor(tiny_sam)
    predictor.set_image(image)
    with pytest.raises(DataError, match=message):
        predictor.predict_torch(**kwargs)


def test_set_torch_image_and_the_model_are_checked(tiny_sam) -> None:
    predictor = GaraSamPredictor(tiny_sam)
    with pytest.raises(DataError, match="non-finite"):
        predictor.set_torch_image(torch.full((1, 3, 256, 200), NAN), (256, 200))
    with pytest.raises(DataError, match="original_image_size"):
        predictor.set_torch_image(torch.zeros(1, 3, 256, 200), (0, 200))
    with pytest.raises(ConfigError, match="expected a SAM model"):
        GaraSamPredictor("sam_vit_b.pth")


def test_a_low_res_logits_map_feeds_back_as_mask_input(tiny_sam, image) -> None:
    predictor = GaraSamPredictor(tiny_sam)
    predictor.set_image(image)
    _, scores, low_res = predictor.predict(box=[10, 10, 60, 50])
    assert low_res.shape[1:] == predictor.mask_input_size
    best = low_res[np.argmax(scores)][None]
    masks, _, _ = predictor.predict(box=[10, 10, 60, 50], mask_input=best, multimask_output=False)
    assert masks.shape == (1, *image.shape[:2])
