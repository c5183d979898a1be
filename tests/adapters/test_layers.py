import math

import pytest
import torch
from torch import nn

from garasam.adapters import GaRAConfig, GaRALinear, LoRAConfig, LoRALinear, MoELoRAConfig, MoELoRALinear
from garasam.adapters.gates import hard_sigmoid_gate, pool_tokens


def _layer(cls, config, c_in=12, c_out=36):
    torch.manual_seed(0)
    layer = cls(nn.Linear(c_in, c_out), config)
    with torch.no_grad():
        layer.lora_B.normal_(0, 0.1)
    return layer


def _manual_gara(layer: GaRALinear, x: torch.Tensor) -> torch.Tensor:
    """The paper's formula written out with deterministic gates, both spaces computed."""
    pooled = pool_tokens(x)
    z_space = (torch.sigmoid(layer.space_gate(pooled)) > 0.5).float()  # [N, 1]
    z_low = (torch.sigmoid(layer.component_gates[0](pooled)) > 0.5).float()
    z_high = (torch.sigmoid(layer.component_gates[1](pooled)) > 0.5).float()
    low, high = layer.segment_slices()
    shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (-1,)
    a_low, a_high = layer.lora_A[low], layer.lora_A[high]
    b_low, b_high = layer.lora_B[:, low], layer.lora_B[:, high]
    d_low = (z_low.view(shape) * (x @ a_low.T)) @ b_low.T
    d_high = (z_high.view(shape) * (x @ a_high.T)) @ b_high.T
    delta = (1 - z_space.view(*shape[:-1], 1)) * d_low + z_space.view(*shape[:-1], 1) * d_high
    return layer.base(x) + layer.scale * delta


def test_gara_eval_matches_paper_formula_and_records_gates() -> None:
    layer = _layer(GaRALinear, GaRAConfig(r_low=4, r_high=8)).eval()
    x = torch.randn(16, 3, 3, 12)
    with torch.no_grad():
        out = layer(x)
        expected = _manual_gara(layer, x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    state = layer.gate_state
    assert state.segment.shape == (16,) and state.active.shape == (16,)
    assert set(state.segment.tolist()) <= {0, 1}
    assert (state.active <= torch.where(state.segment.bool(), 8, 4)).all()


def test_gara_eval_is_deterministic() -> None:
    layer = _layer(GaRALinear, GaRAConfig(r_low=4, r_high=8)).eval()
    x = torch.randn(8, 5, 12)
    with torch.no_grad():
        assert torch.equal(layer(x), layer(x))


@pytest.mark.parametrize("chosen", [0, 1])
def test_gara_eval_touches_only_the_selected_space(chosen: int) -> None:
    layer = _layer(GaRALinear, GaRAConfig(r_low=4, r_high=8)).eval()
    with torch.no_grad():  # force every row to choose `chosen`
        last = layer.space_gate[-1]
        last.weight.zero_()
        last.bias.fill_(5.0 if chosen else -5.0)
        reference = layer(torch.ones(4, 6, 12))
        other = layer.segment_slices()[1 - chosen]
        layer.lora_A[other] = float("nan")
        layer.lora_B[:, other] = float("nan")
        out = layer(torch.ones(4, 6, 12))
    assert torch.isfinite(out).all(), "the unselected space was computed in eval mode"
    assert torch.equal(out, reference)
    assert (layer.gate_state.segment == chosen).all()


def test_gara_mixed_selection_in_eval_groups_rows() -> None:
    layer = _layer(GaRALinear, GaRAConfig(r_low=4, r_high=8)).eval()
    x = torch.randn(32, 4, 12) * 3
    with torch.no_grad():
        layer(x)
    segments = layer.gate_state.segment
    assert 0 < segments.sum() < 32, "test needs rows choosing both spaces"
    with torch.no_grad():
        torch.testing.assert_close(layer(x), _manual_gara(layer, x), rtol=1e-5, atol=1e-6)


def test_gara_mixed_selection_runs_under_bf16_autocast() -> None:
    """The reference path under autocast (SAM 2.1 on a GPU runs it so): updates come out in bf16
    while the input is float32; rows of both spaces still land in one output (it once failed here)."""
    layer = _layer(GaRALinear, GaRAConfig(r_low=4, r_high=8)).eval()
    x = torch.randn(32, 4, 12) * 3
    with torch.no_grad():
        expected = layer(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            actual = layer(x)
    assert 0 < layer.gate_state.segment.sum() < 32, "test needs rows choosing both spaces"
    assert actual.dtype == torch.bfloat16
    torch.testing.assert_close(actual.float(), expected, rtol=0.05, atol=0.05)


def test_straight_through_gates_are_hard_forward_soft_backward() -> None:
    torch.manual_seed(0)
    logits = torch.randn(1000, requires_grad=True)
    z = hard_sigmoid_gate(logits, tau=0.5, training=True)
    assert set(z.detach().unique().tolist()) <= {0.0, 1.0}
    z.sum().backward()
    assert (logits.grad > 0).all(), "the soft relaxation must carry a gradient to every logit"
    # Gumbel noise: the frequency of z = 1 rises with the logit.
    high = hard_sigmoid_gate(torch.full((20000,), 2.0), 0.5, True).mean()
    low = hard_sigmoid_gate(torch.full((20000,), -2.0), 0.5, True).mean()
    assert high > 0.8 and low < 0.4


def test_every_gate_mlp_gets_a_gradient_in_training() -> None:
    layer = _layer(GaRALinear, GaRAConfig(r_low=4, r_high=8)).train()
    x = torch.randn(64, 4, 12)
    layer(x).square().sum().backward()
    assert layer.base.weight.grad is None
    for name, param in layer.named_parameters():
        if name.startswith("base."):
            continue
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert 0 < layer.gate_state.segment.sum() < 64


@pytest.mark.parametrize(
    ("gating", "has_space_gate", "has_component_gates", "ranks"),
    [
        ("gated", True, True, (4, 8)),
        ("unified", False, True, (8,)),
        ("space_only", True, False, (4, 8)),
        ("random", False, False, (4, 8)),
    ],
)
def test_ablation_switches(gating, has_space_gate, has_component_gates, ranks) -> None:
    layer = _layer(GaRALinear, GaRAConfig(r_low=4, r_high=8, gating=gating))
    assert (layer.space_gate is not None) == has_space_gate
    assert (layer.component_gates is not None) == has_component_gates
    assert layer.segment_ranks == ranks
    with torch.no_grad():
        layer.eval()(torch.randn(32, 3, 12))
    state = layer.gate_state
    if gating == "unified":
        assert (state.segment == 0).all()
    if gating == "space_only":  # the chosen space is fully on
        assert torch.equal(state.active, torch.where(state.segment.bool(), 8, 4))
    if gating == "random":
        assert 0 < state.segment.sum() < 32


@pytest.mark.parametrize("gating", ["gated", "space_only", "random"])
def test_nested_hierarchies_choose_one_of_n_spaces(gating: str) -> None:
    """Table 12's 3- and 4-level hierarchies: r_mid adds spaces; each row uses exactly one of them."""
    layer = _layer(GaRALinear, GaRAConfig(r_low=2, r_mid=(4, 6), r_high=8, gating=gating))
    assert layer.segment_ranks == (2, 4, 6, 8) and layer.lora_A.shape[0] == 20
    if gating != "random":
        assert layer.space_gate[-1].out_features == 4  # one score per space
    x = torch.randn(64, 3, 12)
    with torch.no_grad():
        if gating != "random":  # spread the rows over the spaces
            layer.space_gate[-1].weight.normal_(0, 3.0)
        out = layer.eval()(x)
        mask = layer.component_mask(x)
    state = layer.gate_state
    assert len(set(state.segment.tolist())) >= 3
    for row in range(64):
        cols = layer.segment_slices()[int(state.segment[row])]
        outside = torch.ones(20, dtype=torch.bool)
        outside[cols] = False
        assert not mask[row, outside].any()  # no component of another space is on
        assert int(mask[row].sum()) == int(state.active[row])
    if gating != "random":  # (random gating draws anew in every call)
        # Evaluation multiplies only the chosen space; the masked (fused-style) update is the same.
        masked = layer.base(x) + layer.scale * layer._masked_delta(x, mask)
        torch.testing.assert_close(out, masked, rtol=1e-5, atol=1e-6)


def test_nested_hierarchy_trains_every_gate() -> None:
    layer = _layer(GaRALinear, GaRAConfig(r_low=2, r_mid=(4,), r_high=8)).train()
    layer(torch.randn(64, 4, 12)).square().sum().backward()
    for name, param in layer.named_parameters():
        if not name.startswith("base."):
            assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_lora_update_is_b_times_a() -> None:
    layer = _layer(LoRALinear, LoRAConfig(rank=5, scale=2.0))
    x = torch.randn(3, 7, 12)
    expected = layer.base(x) + 2.0 * (x @ layer.lora_A.T @ layer.lora_B.T)
    torch.testing.assert_close(layer(x), expected)
    assert layer.gate_state is None


def test_moe_lora_uses_one_expert_per_row() -> None:
    layer = _layer(MoELoRALinear, MoELoRAConfig(expert_ranks=(2, 4, 6))).eval()
    x = torch.randn(24, 3, 12) * 3
    with torch.no_grad():
        out = layer(x)
    segment = layer.gate_state.segment
    assert torch.equal(layer.gate_state.active, torch.tensor([2, 4, 6])[segment])
    slices = layer.segment_slices()
    for row in range(24):
        cols = slices[segment[row]]
        expected = layer.base(x[row]) + x[row] @ layer.lora_A[cols].T @ layer.lora_B[:, cols].T
        torch.testing.assert_close(out[row], expected, rtol=1e-5, atol=1e-5)
    layer.train()
    layer(x).sum().backward()
    assert layer.gate[0].weight.grad.abs().sum() > 0


def test_a_is_kaiming_uniform_and_b_zero() -> None:
    layer = GaRALinear(nn.Linear(64, 192), GaRAConfig())
    bound = 1 / math.sqrt(64)  # kaiming_uniform with a = sqrt(5)
    assert layer.lora_A.abs().max() <= bound and layer.lora_A.abs().max() > 0.9 * bound
    assert layer.lora_A.shape == (272, 64) and layer.lora_B.shape == (192, 272)
    assert not layer.lora_B.any()
