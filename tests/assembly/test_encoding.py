"""garasam.assembly.encoding: the one door through which images reach the gates (issue 28, item 4)."""

from __future__ import annotations

import torch

from garasam.adapters import GaRAConfig, GateState, LoRAConfig, adapter_layers, gate_summary, inject_adapters
from garasam.adapters import valid_input_sizes as valid_area
from garasam.assembly import encode, release_valid_area
from garasam.models import build_sam
from garasam.models.features import encode_images

SIZES = [(256, 160), (128, 256)]  # two images, each padded differently inside the 256 square


def _gara() -> torch.nn.Module:
    torch.manual_seed(0)
    return inject_adapters(build_sam("tiny"), GaRAConfig(r_low=2, r_high=4))


def test_encode_is_the_hand_written_sequence(pixels: torch.Tensor) -> None:
    model = _gara().eval()
    batch = pixels.repeat(2, 1, 1, 1)
    with torch.no_grad(), valid_area(model, SIZES):
        reference = encode_images(model, batch)
    expected = gate_summary(model, 2)
    with torch.no_grad():
        features, gates = encode(model, batch, SIZES)
    torch.testing.assert_close(features.embeddings, reference.embeddings, rtol=0, atol=0)
    got = gates.summary()
    assert [s.name for s in got] == [s.name for s in expected] and len(got) == 6
    for mine, theirs in zip(got, expected, strict=True):
        torch.testing.assert_close(mine.mean_active_rank, theirs.mean_active_rank)
        torch.testing.assert_close(mine.high_fraction, theirs.high_fraction)
    # the padding mattered: the same images without their valid area gate differently
    with torch.no_grad():
        _, unbounded = encode(model, batch, [(256, 256)] * 2)
    assert any(
        not torch.equal(a.mean_active_rank, b.mean_active_rank)
        or not torch.equal(a.high_fraction, b.high_fraction)
        for a, b in zip(got, unbounded.summary(), strict=True)
    )


def test_the_valid_area_lasts_through_a_backward_only(pixels: torch.Tensor) -> None:
    model = _gara().train()
    layers = list(adapter_layers(model).values())
    with torch.no_grad():
        encode(model, pixels, [SIZES[0]])
    assert all(layer.valid_tokens is None for layer in layers)  # inference: released at once
    features, _ = encode(model, pixels, [SIZES[0]])
    assert all(
        layer.valid_tokens is not None for layer in layers
    )  # activation checkpointing re-runs the gates
    features.embeddings.sum().backward()
    release_valid_area(model)
    assert all(layer.valid_tokens is None for layer in layers)


def test_the_gates_of_one_encode_stay_its_own(pixels: torch.Tensor) -> None:
    """A CUDA graph's replay overwrites its gate tensors: encode keeps a copy of graph-owned ones."""
    model = _gara().eval()
    with torch.no_grad():
        _, first = encode(model, pixels, [SIZES[0]])
    before = [s.mean_active_rank.clone() for s in first.summary()]
    for layer in adapter_layers(model).values():  # as a graph replay leaves them: static output tensors
        state = layer.gate_state
        layer.gate_state = GateState(state.segment, state.active, owned_by_graph=True)
    from garasam.assembly.encoding import read_gates

    owned = read_gates(model, 1)
    for layer in adapter_layers(model).values():
        layer.gate_state.active.zero_()  # the next replay writes into the same tensors
    assert [s.mean_active_rank for s in owned.summary()] == before  # the copy kept the decisions


def test_adapters_without_gates_report_none(pixels: torch.Tensor) -> None:
    for model in (build_sam("tiny"), inject_adapters(build_sam("tiny"), LoRAConfig(rank=2))):
        with torch.no_grad():
            _, gates = encode(model.eval(), pixels, [(256, 256)])
        assert not gates and gates.summary() == []


def test_one_size_per_image() -> None:
    import pytest

    with pytest.raises(ValueError, match="2 images but 1 input sizes"):
        encode(_gara(), torch.zeros(2, 3, 256, 256), [(256, 256)])
