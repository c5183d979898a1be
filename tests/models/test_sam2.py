"""SAM 2.1 in image mode: Meta's checkpoints through build_sam compute what the official `sam2`
package computes (random weights), every released layout converts, and adapters inject into Hiera."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import Sam2Model

from garasam.adapters import GaRAConfig, LoRAConfig, MoELoRAConfig, inject_adapters, trainable_parameters
from garasam.errors import CheckpointError
from garasam.models import build_sam
from garasam.models.checkpoint import _check_state_dict, _to_hf_layout
from garasam.models.features import decode, encode_images, input_geometry
from garasam.models.hub import infer_model_type
from garasam.models.registry import sam_config
from tests.official_sam2 import official_mini_sam2, official_sam2, official_sam2_features

RELATIVE = 1e-5  # random SAM 2 logits reach several hundred; float32 rounding grows with them
TOLERANCE = 1e-4
POINTS = torch.tensor([[[60.0, 100.0], [200.0, 30.0]]])
LABELS = torch.tensor([[1, 0]])
BOX = torch.tensor([[40.0, 50.0, 180.0, 220.0]])


def _max_diff(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return (actual - expected).abs().max().item() - RELATIVE * expected.abs().max().item()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    """The official mini SAM 2.1 and its weights saved as Meta's `.pt` files hold them ({"model": ...})."""
    torch.manual_seed(0)
    official = official_mini_sam2()
    path = tmp_path_factory.mktemp("sam2") / "sam2.1_mini.pt"
    torch.save({"model": official.state_dict()}, path)
    return official, path


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(2))


def _official_decode(official: torch.nn.Module, maps: list[torch.Tensor], prompt: str, multimask: bool):
    """The official decoder call of `SAM2ImagePredictor.predict`: a box enters as two corner points
    (labels 2, 3), as that predictor passes it."""
    coords, labels = (
        (POINTS, LABELS) if prompt == "points" else (BOX.reshape(1, 2, 2), torch.tensor([[2, 3]]))
    )
    sparse, dense = official.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
    masks, iou, _, _ = official.sam_mask_decoder(
        image_embeddings=maps[-1],
        image_pe=official.sam_prompt_encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
        repeat_image=False,
        high_res_features=maps[:-1],
    )
    return masks, iou


def test_the_feature_maps_match(pair: tuple, pixels: torch.Tensor) -> None:
    official, path = pair
    ours = build_sam("sam2.1_mini", path)
    with torch.no_grad():
        expected = official_sam2_features(official, pixels)
        features = encode_images(ours, pixels)
    actual = [*features.intermediate, features.embeddings]
    assert [tuple(a.shape) for a in actual] == [tuple(e.shape) for e in expected]
    for a, e in zip(actual, expected, strict=True):
        assert _max_diff(a, e) < TOLERANCE


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("prompt", ["points", "box"])
def test_masks_and_scores_match(pair: tuple, pixels: torch.Tensor, prompt: str, multimask: bool) -> None:
    official, path = pair
    ours = build_sam("sam2.1_mini", path)
    with torch.no_grad():
        masks, iou = _official_decode(official, official_sam2_features(official, pixels), prompt, multimask)
        arguments = (
            {"input_points": POINTS[:, None], "input_labels": LABELS[:, None]}
            if prompt == "points"
            else {"input_boxes": BOX[:, None]}
        )
        out = decode(ours, encode_images(ours, pixels), multimask_output=multimask, **arguments)
    assert out.pred_masks.shape == (1, 1, 3 if multimask else 1, 64, 64)
    assert _max_diff(out.pred_masks[0, 0], masks[0]) < TOLERANCE
    assert _max_diff(out.iou_scores[0, 0], iou[0]) < TOLERANCE


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("image_encoder.trunk.blocks.0.norm1.weight", "image_encoder.trunk.blocks.0.norm2.weight"),
        (
            "sam_mask_decoder.transformer.layers.1.self_attn.q_proj.weight",
            "sam_mask_decoder.transformer.layers.1.self_attn.k_proj.weight",
        ),
    ],
)
def test_a_swapped_key_is_seen(
    pair: tuple, pixels: torch.Tensor, tmp_path: Path, first: str, second: str
) -> None:
    official, _ = pair
    state = dict(official.state_dict())
    state[first], state[second] = state[second], state[first]
    torch.save({"model": state}, tmp_path / "swapped.pt")
    ours = build_sam("sam2.1_mini", tmp_path / "swapped.pt")
    with torch.no_grad():
        masks, _ = _official_decode(official, official_sam2_features(official, pixels), "box", False)
        out = decode(ours, encode_images(ours, pixels), multimask_output=False, input_boxes=BOX[:, None])
    assert _max_diff(out.pred_masks[0, 0], masks[0]) > 10 * TOLERANCE


@pytest.mark.parametrize("size", ["t", "s", "b+", "l"])
def test_the_released_layouts_convert(size: str) -> None:
    """Every image-mode key of Meta's SAM 2.1 t/s/b+/l maps onto ours with the right shape; the video
    modules are what is left over."""
    model_type = f"sam2.1_hiera_{size}"
    official = official_sam2(size)
    with torch.device("meta"):
        ours = Sam2Model(sam_config(model_type))
    state = _to_hf_layout({key: value.to("meta") for key, value in official.state_dict().items()})
    _check_state_dict(state, ours.state_dict(), model_type, Path(f"{model_type}.pt"))


def test_checkpoints_of_another_family_or_size_are_named(pair: tuple) -> None:
    _, path = pair
    with pytest.raises(
        CheckpointError, match="holds SAM 2.1 .*not SAM \\(tiny\\); build it as 'sam2.1_mini'"
    ):
        build_sam("tiny", path)
    with pytest.raises(CheckpointError, match="this is a sam2.1_mini checkpoint .* not sam2.1_hiera_t"):
        build_sam("sam2.1_hiera_t", path)


@pytest.mark.parametrize(
    ("name", "model_type"),
    [
        ("sam2.1_hiera_tiny.pt", "sam2.1_hiera_t"),
        ("sam2.1_hiera_base_plus.pt", "sam2.1_hiera_b+"),
        ("sam2.1_hiera_large.pt", "sam2.1_hiera_l"),
    ],
)
def test_released_file_names_tell_the_type(name: str, model_type: str) -> None:
    assert infer_model_type(name) == model_type


def test_a_hugging_face_folder_loads(pair: tuple, tmp_path: Path, pixels: torch.Tensor) -> None:
    _, path = pair
    model = build_sam("sam2.1_mini", path)
    Sam2Model.save_pretrained(model, tmp_path / "hf")
    again = build_sam("sam2.1_mini", tmp_path / "hf")
    assert infer_model_type(tmp_path / "hf") == "sam2.1_mini"
    with torch.no_grad():
        assert torch.allclose(
            encode_images(again, pixels).embeddings, encode_images(model, pixels).embeddings
        )


def test_input_geometry_is_sam2s_square() -> None:
    assert input_geometry(build_sam("sam2.1_mini")) == (256, True)
    assert input_geometry(build_sam("tiny")) == (256, False)


@pytest.mark.parametrize(
    "config",
    [GaRAConfig(r_low=4, r_high=16), LoRAConfig(rank=4), MoELoRAConfig(expert_ranks=(2, 4))],
    ids=["gara", "lora", "moe_lora"],
)
def test_adapters_inject_into_every_hiera_block(config: object, pixels: torch.Tensor) -> None:
    model = build_sam("sam2.1_mini")
    with torch.no_grad():
        before = decode(
            model, encode_images(model, pixels), input_boxes=BOX[:, None], multimask_output=False
        ).pred_masks
    inject_adapters(model, config)
    adapted = [name for name, module in model.named_modules() if hasattr(module, "lora_A")]
    assert adapted == [f"vision_encoder.backbone.blocks.{i}.attn.qkv" for i in range(5)]
    masks = decode(
        model, encode_images(model, pixels), input_boxes=BOX[:, None], multimask_output=False
    ).pred_masks
    assert torch.equal(masks, before)  # zero-initialised: the frozen model exactly
    masks.sum().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad and "lora_A" in n)


def test_gara_parameter_counts_on_the_released_encoders() -> None:
    """(16 + 256) x (in + out) per qkv: Hiera's qkv maps a block's input width to 3x its output width,
    which doubles at the first block of stages 2-4 (the numbers docs/adapters.md gives)."""
    for size, (width, stages) in {"t": (96, (1, 2, 7, 2)), "b+": (112, (2, 3, 16, 3))}.items():
        expected, dim = 0, width
        for stage, blocks in enumerate(stages):
            out = width * 2**stage
            for _ in range(blocks):
                expected += 272 * (dim + 3 * out)
                dim = out
        with torch.device("meta"):
            model = Sam2Model(sam_config(f"sam2.1_hiera_{size}"))
        inject_adapters(model, GaRAConfig())
        assert trainable_parameters(model).low_rank == expected, size


def test_hiera_gates_pool_the_valid_tokens_of_each_window(pixels: torch.Tensor) -> None:
    """Each Hiera block's qkv reads windows of its input grid: the gates average the tokens of the
    image, not the zero padding of edge windows (mini: block 4 reads the 16 x 16 grid in 14 x 14
    windows, as Hiera-T reads its 64 x 64 grid at 1024 px), per window or per image (global block)."""
    from garasam.adapters import adapter_layers, valid_input_sizes

    model = build_sam("sam2.1_mini")
    inject_adapters(model, GaRAConfig(r_low=4, r_high=8))
    layers = adapter_layers(model)
    assert [layer.token_grid for layer in layers.values()] == [
        (64, 8, 4),
        (64, 8, 4),
        (32, 4, 8),
        (16, 0, 16),
        (16, 14, 16),
    ]
    seen = {}

    def record(name: str):
        def hook(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            seen[name] = (args[0], module._gate_input(args[0], None))

        return hook

    handles = [layer.register_forward_pre_hook(record(name)) for name, layer in layers.items()]
    with torch.no_grad(), valid_input_sizes(model, [(256, 256)]):
        encode_images(model, pixels)
    for handle in handles:
        handle.remove()
    x, pooled = seen["vision_encoder.backbone.blocks.4.attn.qkv"]
    assert x.shape == (4, 14, 14, 128)  # 2 x 2 windows of the 16 x 16 grid padded to 28 x 28
    for window, (i, j) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        rows, cols = min(14, 16 - 14 * i), min(14, 16 - 14 * j)
        torch.testing.assert_close(pooled[window], x[window, :rows, :cols].mean(dim=(0, 1)))
    assert not torch.allclose(pooled[3], x[3].mean(dim=(0, 1)))  # all-token mean: padding included
    x, pooled = seen["vision_encoder.backbone.blocks.3.attn.qkv"]  # global block: the whole image
    torch.testing.assert_close(pooled[0], x[0].mean(dim=(0, 1)))


def test_the_fast_path_is_sam1s_only() -> None:
    """SAM 2.1 runs transformers' encoder as it is: optimize_sam refuses it, training refuses
    run.fast_encoder=true for it, and the default (None) leaves it alone."""
    from garasam.errors import ConfigError
    from garasam.fast.encoder import optimize_sam, supports_fast_path
    from garasam.train.setup import apply_fast_encoder

    model = build_sam("sam2.1_mini")
    assert not supports_fast_path(model) and supports_fast_path(build_sam("hq_tiny"))
    with pytest.raises(ConfigError, match="expects a transformers SAM"):
        optimize_sam(model)
    inject_adapters(model, GaRAConfig(r_low=4, r_high=8))
    with pytest.raises(ConfigError, match="the fast encoder is SAM 1's"):
        apply_fast_encoder(model, True, "auto")
    apply_fast_encoder(model, None, "auto")
    assert type(model.vision_encoder).__name__ == "Sam2VisionModel"  # transformers' own, untouched


def test_a_folder_of_an_unknown_sam2_architecture_is_described(pair: tuple, tmp_path: Path) -> None:
    """A Sam2Model folder whose config matches none of our types is named with its encoder's width and
    depth (Hiera's: the first stage's width, all blocks), as SAM's are."""
    _, path = pair
    model = build_sam("sam2.1_mini", path)
    Sam2Model.save_pretrained(model, tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    config["vision_config"]["backbone_config"]["window_size_per_stage"] = [8, 4, 8, 4]
    (tmp_path / "hf" / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        CheckpointError, match="a SAM of none of our model types \\(image encoder width 32, 5 blocks\\)"
    ):
        build_sam("sam2.1_mini", tmp_path / "hf")
