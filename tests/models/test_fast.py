"""The fast path (garasam.fast.encoder, garasam.kernels.fused) computes what the reference path does."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers import SamConfig, SamModel

from benchmarks.encoder_models import calibrate_space_gates
from garasam.adapters import (
    GaRAConfig,
    GaRALinear,
    LoRAConfig,
    LoRALinear,
    MoELoRAConfig,
    adapter_layers,
    adapter_state_dict,
    gate_summary,
    inject_adapters,
)
from garasam.errors import ConfigError
from garasam.fast.encoder import (
    ATTENTION,
    decomposed_rel_pos,
    optimize_sam,
    window_partition,
    window_unpartition,
)
from garasam.models.registry import sam_config

# Relative errors (norm of the difference over norm of the reference). float32: measured about
# 1e-6 on embeddings; bf16 through six blocks: about 1e-2.
FP32_TOLERANCE = 2e-5
BF16_TOLERANCE = 4e-2
ADAPTERS = {
    "frozen": None,
    "gara": GaRAConfig(),
    "gara_3level": GaRAConfig(r_mid=(64,)),  # the paper's Table 12 hierarchy: a softmax space gate
    "lora": LoRAConfig(rank=16),
    "moe_lora": MoELoRAConfig(),
}
BOXES = torch.tensor([[[30.0, 40.0, 150.0, 200.0], [100.0, 20.0, 240.0, 120.0]]])


def _tiny_sam(adapter, pixel_values: torch.Tensor, config: SamConfig | None = None) -> SamModel:
    """Tiny SAM whose every part matters: PyTorch's default init, random rel-pos, non-zero B.

    transformers' init (std 0.02) and zero position tables make the attention branch a rounding
    error beside the residual and the mask logits about 1e-12, which would hide mistakes.
    """
    torch.manual_seed(0)
    model = SamModel(config or sam_config("tiny")).eval()
    encoder = model.vision_encoder
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
                module.reset_parameters()
        for layer in encoder.layers:
            layer.attn.rel_pos_h.normal_(0, 0.5)
            layer.attn.rel_pos_w.normal_(0, 0.5)
        encoder.pos_embed.normal_(0, 0.1)
    if adapter is not None:
        inject_adapters(model, adapter)
        with torch.no_grad():
            for layer in adapter_layers(model).values():
                layer.lora_B.normal_(0, 0.05)
        calibrate_space_gates(model, pixel_values)
    return model


@pytest.fixture
def pixels() -> torch.Tensor:
    return torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(1))


def _rel(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref.float()).norm() / ref.float().norm()).item()


def _predict(model: SamModel, pixels: torch.Tensor):
    with torch.no_grad():
        embeddings = model.get_image_embeddings(pixels)
        out = model(
            image_embeddings=embeddings, input_boxes=BOXES.to(pixels.device).expand(len(pixels), -1, -1)
        )
    gates = {name: layer.gate_state for name, layer in adapter_layers(model).items()}
    return embeddings, out.pred_masks, out.iou_scores, gates


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_fast_path_matches_reference_in_float32(kind: str, pixels: torch.Tensor) -> None:
    ref_model = _tiny_sam(ADAPTERS[kind], pixels)
    ref = _predict(ref_model, pixels)
    fast_model = optimize_sam(_tiny_sam(ADAPTERS[kind], pixels), dtype=torch.float32)
    fast = _predict(fast_model, pixels)
    for out, expected in zip(fast[:3], ref[:3], strict=True):
        assert out.dtype == torch.float32
        assert _rel(out, expected) < FP32_TOLERANCE
    assert fast[3].keys() == ref[3].keys()
    for name, state in ref[3].items():
        if state is None:
            assert fast[3][name] is None  # LoRA has no gates
            continue
        assert torch.equal(fast[3][name].segment, state.segment), name
        assert torch.equal(fast[3][name].active, state.active), name
    summaries = [gate_summary(m, len(pixels)) for m in (ref_model, fast_model)]
    assert [(s.name, s.mean_active_rank.tolist(), s.high_fraction.tolist()) for s in summaries[0]] == [
        (s.name, s.mean_active_rank.tolist(), s.high_fraction.tolist()) for s in summaries[1]
    ]
    if kind in ("gara", "moe_lora"):
        segments = torch.cat([s.segment for s in ref[3].values()])
        assert 0 < (segments > 0).float().mean() < 1, "the test needs a mix of gate decisions"


@pytest.mark.parametrize("kind", ["frozen", "gara"])
def test_fast_path_in_bf16_stays_close(kind: str, pixels: torch.Tensor) -> None:
    ref = _predict(_tiny_sam(ADAPTERS[kind], pixels), pixels)
    model = optimize_sam(_tiny_sam(ADAPTERS[kind], pixels), dtype=torch.bfloat16)
    fast = _predict(model, pixels)
    assert model.vision_encoder.layers[0].mlp.lin1.weight.dtype == torch.bfloat16
    assert fast[0].dtype == torch.float32  # the decoder gets what it expects
    for out, expected in zip(fast[:3], ref[:3], strict=True):
        assert _rel(out, expected) < BF16_TOLERANCE
    if kind == "gara":
        agree = torch.cat([(fast[3][n].segment == s.segment).float() for n, s in ref[3].items()])
        assert agree.mean() >= 0.9


def test_optimize_sam_keeps_names_and_casts_only_the_frozen_backbone(pixels: torch.Tensor) -> None:
    model = _tiny_sam(GaRAConfig(), pixels)
    keys = list(model.state_dict())
    adapter_keys = list(adapter_state_dict(model))
    for name, param in model.named_parameters():  # train the adapters: their weights stay float32
        param.requires_grad_("lora_" in name or "gate" in name)
    optimize_sam(model)
    assert list(model.state_dict()) == keys and list(adapter_state_dict(model)) == adapter_keys
    layer = model.vision_encoder.layers[0].attn.qkv
    assert layer.fused and layer.base.weight.dtype == torch.bfloat16
    assert layer.lora_A.dtype == layer.lora_B.dtype == torch.float32
    assert {p.dtype for p in layer.gate_parameters()} == {torch.float32}
    assert model.vision_encoder.layers[0].attn.rel_pos_h.dtype == torch.bfloat16
    assert {p.dtype for p in model.mask_decoder.parameters()} == {torch.float32}
    with pytest.raises(ConfigError, match="already optimised"):
        optimize_sam(model)
    with pytest.raises(ValueError, match="hidden states"):
        model.vision_encoder(pixels, output_hidden_states=True)


def test_optimize_sam_rejects_bad_options() -> None:
    model = SamModel(sam_config("tiny"))
    with pytest.raises(ConfigError, match="only fast when compiled"):
        optimize_sam(model, attention="flex")
    with pytest.raises(ConfigError, match="attention must be"):
        optimize_sam(model, attention="magic")
    assert model.vision_encoder.layers[0].mlp.lin1.weight.dtype == torch.float32  # untouched


def _attention_float64(q, k, v, rel_h, rel_w, scale):
    """softmax(q k^T * scale + rel_h[key row] + rel_w[key column]) v, written out in float64."""
    q, k, v, rel_h, rel_w = (t.double() for t in (q, k, v, rel_h, rel_w))
    width = rel_w.shape[-1]
    keys = torch.arange(k.shape[-2])
    scores = q @ k.transpose(-1, -2) * scale + rel_h[..., keys // width] + rel_w[..., keys % width]
    return scores.softmax(-1) @ v


@pytest.mark.parametrize("kind", sorted(ATTENTION))
def test_attention_kinds_compute_rel_pos_attention(kind: str) -> None:
    height, width, dim = 3, 5, 12  # rectangular, so rows and columns cannot be swapped unnoticed
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 3, height * width, dim, generator=g) for _ in range(3))
    rel_h = torch.randn(2, 3, height * width, height, generator=g)
    rel_w = torch.randn(2, 3, height * width, width, generator=g)
    out = ATTENTION[kind](q, k, v, rel_h, rel_w, 0.3)
    torch.testing.assert_close(
        out.double(), _attention_float64(q, k, v, rel_h, rel_w, 0.3), rtol=1e-5, atol=1e-5
    )


def test_decomposed_rel_pos_matches_its_definition() -> None:
    height, width, dim = 3, 4, 6
    g = torch.Generator().manual_seed(3)
    query = torch.randn(2, 1, height * width, dim, generator=g)
    table_h = torch.randn(2 * height - 1, dim, generator=g)
    table_w = torch.randn(2 * width - 1, dim, generator=g)
    rel_h, rel_w = decomposed_rel_pos(query, table_h, table_w, height, width)
    for i in range(height):
        for j in range(width):
            q = query[:, :, i * width + j]
            for kr in range(height):
                torch.testing.assert_close(rel_h[:, :, i * width + j, kr], q @ table_h[i - kr + height - 1])
            for kc in range(width):
                torch.testing.assert_close(rel_w[:, :, i * width + j, kc], q @ table_w[j - kc + width - 1])
    with pytest.raises(ValueError, match="does not fit"):
        decomposed_rel_pos(query, table_h[:-1], table_w, height, width)


@pytest.mark.parametrize("kind", ["gara", "lora", "moe_lora"])
def test_fused_training_gives_the_unfused_gradients(kind: str, pixels: torch.Tensor) -> None:
    weights = torch.randn(2, 64, 16, 16, generator=torch.Generator().manual_seed(4))
    grads = []
    for fast in (False, True):
        model = _tiny_sam(ADAPTERS[kind], pixels)
        if fast:
            optimize_sam(model, dtype=torch.float32)
        model.train()
        torch.manual_seed(5)  # the same Gumbel noise for both paths
        embeddings = model.vision_encoder(pixels).last_hidden_state
        (embeddings * weights).sum().backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
        assert all(layer.base.weight.grad is None for layer in adapter_layers(model).values())
    reference, fused = grads
    assert reference.keys() == fused.keys()
    assert all(g is not None for g in fused.values())
    lora_a = [n for n in reference if n.endswith("lora_A")]
    assert all(reference[n].abs().sum() > 0 for n in lora_a)
    for name, grad in reference.items():  # float32 through six blocks: measured <= 1.2e-5
        assert (fused[name] - grad).norm() <= 1e-4 * grad.norm() + 1e-12, name


def _layer_grads(layer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    x = x.clone().requires_grad_(True)
    torch.manual_seed(6)
    out = layer(x)
    (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    grads = {n: p.grad.clone() for n, p in layer.named_parameters() if p.grad is not None}
    layer.zero_grad(set_to_none=True)
    return out.detach(), {"x": x.grad, **grads}


@pytest.mark.parametrize("bias", [True, False])
def test_fused_layer_backward_covers_every_input(bias: bool) -> None:
    """Input, A, B and gate gradients, and W0 / b0 when someone unfreezes the base."""
    torch.manual_seed(0)
    layer = GaRALinear(nn.Linear(12, 36, bias=bias), GaRAConfig(r_low=3, r_high=5)).train()
    with torch.no_grad():
        layer.lora_B.normal_(0, 0.1)
    layer.base.requires_grad_(True)
    x = torch.randn(16, 3, 3, 12)
    ref_out, ref = _layer_grads(layer, x)
    layer.fused = True
    out, fused = _layer_grads(layer, x)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    assert fused.keys() == ref.keys() and {"x", "base.weight", "lora_A", "lora_B"} <= fused.keys()
    for name in ref:
        torch.testing.assert_close(fused[name], ref[name], rtol=1e-5, atol=1e-6)


def test_fused_layer_under_autocast_keeps_master_weights_in_float32() -> None:
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(16, 48), LoRAConfig(rank=4))
    with torch.no_grad():
        layer.lora_B.normal_(0, 0.1)
    layer.fused = True
    x = torch.randn(5, 7, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert layer.lora_A.grad.dtype == layer.lora_B.grad.dtype == torch.float32
    expected = layer.base(x) + x @ layer.lora_A.T @ layer.lora_B.T
    assert _rel(out, expected) < 1e-2


def test_window_partition_pads_and_round_trips() -> None:
    x = torch.randn(2, 10, 7, 3)
    windows, padded = window_partition(x, 4)
    assert padded == (12, 8) and windows.shape == (2 * 3 * 2, 4, 4, 3)
    canvas = torch.zeros(2, 12, 8, 3)
    canvas[:, :10, :7] = x
    torch.testing.assert_close(windows[1 * 6 + 2 * 2 + 1], canvas[1, 8:12, 4:8])  # image 1, row 2, column 1
    torch.testing.assert_close(window_unpartition(windows, 4, padded, (10, 7)), x)


def test_fast_path_matches_reference_with_padded_windows(pixels: torch.Tensor) -> None:
    """ViT-B/L/H pad 64x64 tokens to 70x70 for 14x14 windows; tiny needs a window that does not divide 16."""
    config = sam_config("tiny")
    config.vision_config.window_size = 6
    ref_model = _tiny_sam(None, pixels, config)
    fast_model = optimize_sam(_tiny_sam(None, pixels, config), dtype=torch.float32)
    assert fast_model.vision_encoder.layers[0].attn.rel_pos_h.shape[0] == 2 * 6 - 1
    with torch.no_grad():
        ref, fast = (m.get_image_embeddings(pixels) for m in (ref_model, fast_model))
    assert _rel(fast, ref) < FP32_TOLERANCE


@pytest.mark.slow  # inductor compiles C++ kernels for each block kind: about 30 s of CPU per mode
@pytest.mark.parametrize("mode", ["blocks", "whole"])
def test_compiled_fast_path_matches_reference(mode: str) -> None:
    """`compile=True` (per block) and `cuda_graphs="compile"` (the whole encoder; on a CPU inductor
    compiles it without graphs) compute the reference's embeddings and gate decisions, with the gates
    choosing differently for the two images."""
    import torch._dynamo

    pixels = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(4))
    reference = _tiny_sam(GaRAConfig(), pixels)
    compiled = copy.deepcopy(reference)
    options = {"compile": True} if mode == "blocks" else {"cuda_graphs": "compile"}
    torch._dynamo.reset()
    optimize_sam(compiled, dtype=torch.float32, **options)
    expected, got = _predict(reference, pixels), _predict(compiled, pixels)
    torch._dynamo.reset()
    for out, ref in zip(got[:3], expected[:3], strict=True):
        assert _rel(out, ref) < FP32_TOLERANCE
    for name, state in got[3].items():
        assert torch.equal(state.segment, expected[3][name].segment), name
    assert any(not torch.equal(s.segment.view(2, -1)[0], s.segment.view(2, -1)[1]) for s in got[3].values())
