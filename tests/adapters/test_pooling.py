"""The gates pool over valid tokens only (issue 19, deviation 4): not the zero padding that makes edge
windows whole, nor the padded area of a non-square image; on the reference and the fused path alike."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import SamModel

from garasam.adapters import (
    GaRAConfig,
    MoELoRAConfig,
    adapter_layers,
    inject_adapters,
    load_adapters,
    save_adapters,
    valid_input_sizes,
)
from garasam.adapters.gates import pool_tokens
from garasam.models.registry import sam_config
from tests.adapters.conftest import randomize_b

# The tiny SAM with 6 x 6 windows on its 16 x 16 token grid: edge windows get 2 rows/columns of padding,
# as ViT-B/L/H's 64 x 64 grid does with 14 x 14 windows.
WINDOW = 6


def _sam(config) -> SamModel:
    torch.manual_seed(0)
    sam_cfg = sam_config("tiny")
    sam_cfg.vision_config.window_size = WINDOW
    model = SamModel(sam_cfg).eval()
    with torch.no_grad():  # PyTorch's default init: the tiny config's 1e-10 would make every token ~0
        for module in model.modules():
            if isinstance(module, torch.nn.Linear | torch.nn.Conv2d):
                module.reset_parameters()
        model.vision_encoder.pos_embed.normal_(0, 0.1)
    inject_adapters(model, config)
    randomize_b(model)
    return model


def _gate_inputs(
    model: SamModel, pixels: torch.Tensor, sizes=None
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each adapter's input tokens and the pooled vector its gates saw, for one encoder call."""
    seen = {}
    hooks = []
    for name, layer in adapter_layers(model).items():

        def hook(module, args, _name=name):
            x = args[0]
            seen[_name] = (x, module._gate_input(x, None))

        hooks.append(layer.register_forward_pre_hook(hook))
    with torch.no_grad(), valid_input_sizes(model, sizes or [(256, 256)] * len(pixels)):
        model.get_image_embeddings(pixels)
    for h in hooks:
        h.remove()
    return seen


def _window_validity(images: int, valid: torch.Tensor) -> torch.Tensor:
    """[images * windows, 6, 6] validity written out window by window."""
    per_side = -(-16 // WINDOW)
    out = torch.zeros(images, per_side, per_side, WINDOW, WINDOW, dtype=torch.bool)
    for i in range(per_side):
        for j in range(per_side):
            block = valid[:, i * WINDOW : (i + 1) * WINDOW, j * WINDOW : (j + 1) * WINDOW]
            out[:, i, j, : block.shape[1], : block.shape[2]] = block
    return out.reshape(-1, WINDOW, WINDOW)


def _expected(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per row, the mean of its valid tokens; of all of them when none is valid."""
    rows = []
    for tokens, ok in zip(x.flatten(1, 2), valid.flatten(1), strict=True):
        rows.append(tokens[ok].mean(0) if ok.any() else tokens.mean(0))
    return torch.stack(rows)


@pytest.mark.parametrize("config", [GaRAConfig(r_low=2, r_high=4), MoELoRAConfig(expert_ranks=(2, 4))])
def test_edge_windows_and_the_padded_image_area_are_left_out(config) -> None:
    model = _sam(config)
    pixels = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    sizes = [(256, 256), (128, 200)]  # the second image: 8 x 13 tokens of image, the rest padding
    seen = _gate_inputs(model, pixels, sizes)
    valid = torch.zeros(2, 16, 16, dtype=torch.bool)
    valid[0] = True
    valid[1, :8, :13] = True
    for name, (x, pooled) in seen.items():
        block = int(name.split(".layers.")[1].split(".")[0])
        truth = valid if block in (2, 5) else _window_validity(2, valid)
        assert x.shape[0] == truth.shape[0], name
        torch.testing.assert_close(pooled, _expected(x, truth), rtol=1e-5, atol=1e-6)
        assert (pooled - pool_tokens(x)).abs().max() > 1e-2 * pooled.abs().max(), name  # it matters


def test_without_sizes_only_the_window_padding_is_left_out() -> None:
    model = _sam(GaRAConfig(r_low=2, r_high=4))
    pixels = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    seen = {}
    layer = adapter_layers(model)["vision_encoder.layers.0.attn.qkv"]

    def hook(module, args) -> None:
        seen.setdefault("x", (args[0], module._gate_input(args[0], None)))

    handle = layer.register_forward_pre_hook(hook)
    with torch.no_grad():
        model.get_image_embeddings(pixels)
    handle.remove()
    x, pooled = seen["x"]
    torch.testing.assert_close(
        pooled, _expected(x, _window_validity(1, torch.ones(1, 16, 16, dtype=torch.bool)))
    )
    global_layer = adapter_layers(model)["vision_encoder.layers.2.attn.qkv"]
    assert global_layer.valid_tokens is None  # nothing is left set between calls


def test_pooling_all_tokens_is_kept_for_adapters_saved_before_the_choice(tmp_path) -> None:
    model = _sam(GaRAConfig(r_low=2, r_high=4))
    save_adapters(model, tmp_path)
    meta = json.loads((tmp_path / "adapter_config.json").read_text())
    assert meta["adapter"]["gate_pooling"] == "valid"
    del meta["adapter"]["gate_pooling"]  # as every file written before issue 19
    (tmp_path / "adapter_config.json").write_text(json.dumps(meta))
    torch.manual_seed(0)
    sam_cfg = sam_config("tiny")
    sam_cfg.vision_config.window_size = WINDOW
    fresh = load_adapters(SamModel(sam_cfg).eval(), tmp_path)
    layer = next(iter(adapter_layers(fresh).values()))
    assert layer.config.gate_pooling == "all"
    x = torch.randn(9, WINDOW, WINDOW, 160)
    torch.testing.assert_close(layer._gate_input(x, None), pool_tokens(x))


def test_fused_path_pools_like_the_reference() -> None:
    """Same gate decisions and embeddings with valid-token pooling on both paths (eval mode)."""
    model = _sam(GaRAConfig(r_low=2, r_high=4))
    pixels = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(3))
    sizes = [(256, 160), (100, 256)]
    outputs = []
    for fused in (False, True):
        for layer in adapter_layers(model).values():
            layer.fused = fused
        with torch.no_grad(), valid_input_sizes(model, sizes):
            embeddings = model.get_image_embeddings(pixels)
        gates = [layer.gate_state.segment.clone() for layer in adapter_layers(model).values()]
        outputs.append((embeddings, gates))
    (ref, ref_gates), (fused, fused_gates) = outputs
    torch.testing.assert_close(fused, ref, rtol=1e-4, atol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(ref_gates, fused_gates, strict=True))


def test_a_window_with_no_valid_token_falls_back_to_its_plain_mean() -> None:
    x = torch.randn(2, 3, 3, 4)
    weights = torch.zeros(2, 3, 3, dtype=torch.bool)
    weights[0, 0, 0] = True
    pooled = pool_tokens(x, weights)
    torch.testing.assert_close(pooled[0], x[0, 0, 0])
    torch.testing.assert_close(pooled[1], x[1].flatten(0, 1).mean(0))


@pytest.mark.parametrize("size", [(0, 10), (300, 10), (10, -1)])
def test_sizes_that_do_not_fit_the_input_are_refused(size) -> None:
    model = _sam(GaRAConfig(r_low=2, r_high=4))
    with (
        pytest.raises(ValueError, match="does not fit the 256 x 256 input"),
        valid_input_sizes(model, [size]),
    ):
        pass
