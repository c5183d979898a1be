"""CUDA graphs of the fast encoder (garasam.fast.cuda_graphs): capture on a repeated shape, replay
correctly when the gates choose differently per image, and nothing inside that needs the host.

On a CPU the graph is replaced by a stand-in with a graph's contract (`replay()` recomputes from the
static inputs and overwrites the static outputs in place), which checks the bookkeeping: what is
copied in, what is keyed, what comes back. The tests marked for CUDA capture real graphs.
"""

from __future__ import annotations

import copy

import pytest
import torch

from garasam.adapters import GaRAConfig, adapter_layers, disable_adapters, valid_input_sizes
from garasam.errors import ConfigError
from garasam.fast.cuda_graphs import EncoderGraphs
from garasam.fast.encoder import optimize_for_prediction, optimize_sam
from tests.models.test_fast import FP32_TOLERANCE, _rel, _tiny_sam

GARA = GaRAConfig(gate_pooling="valid")
SIZES = [(256, 200), (180, 256), (256, 256)]  # each image's area inside the padded input


class StandInGraph:
    """A CPU stand-in for `capture_cuda_graph`: records captures; replay reruns on the static inputs."""

    def __init__(self) -> None:
        self.captured = 0

    def __call__(self, fn, inputs):  # noqa: ANN001, ANN204 - the Capture signature
        self.captured += 1
        outputs = fn(*inputs)

        def replay() -> None:
            for out, new in zip(outputs, fn(*inputs), strict=True):
                out.copy_(new)

        return replay, outputs


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(3, 1, 3, 256, 256, generator=torch.Generator().manual_seed(1))


def _models(images: torch.Tensor, config=GARA):  # noqa: ANN001, ANN202
    reference = _tiny_sam(config, images[0])
    fast = copy.deepcopy(reference)
    optimize_sam(fast, dtype=torch.float32)
    stand_in = StandInGraph()
    fast.vision_encoder.graphs = EncoderGraphs(fast.vision_encoder, capture=stand_in)
    return reference, fast, stand_in


def _encode(model, pixels: torch.Tensor, size: tuple[int, int]):  # noqa: ANN001, ANN202
    with torch.no_grad(), valid_input_sizes(model, [size] * len(pixels)):
        embeddings = model.get_image_embeddings(pixels)
    gates = {name: layer.gate_state for name, layer in adapter_layers(model).items()}
    return embeddings, {
        name: (s.segment.clone(), s.active.clone()) for name, s in gates.items() if s is not None
    }


def test_replays_match_the_reference_when_gates_and_image_areas_differ(images: torch.Tensor) -> None:
    reference, fast, stand_in = _models(images)
    graphs = fast.vision_encoder.graphs
    decisions = []
    for index, (pixels, size) in enumerate(zip(images, SIZES, strict=True)):
        expected, expected_gates = _encode(reference, pixels, size)
        embeddings, gates = _encode(fast, pixels, size)
        assert _rel(embeddings, expected) < FP32_TOLERANCE
        assert gates.keys() == expected_gates.keys()
        for name, (segment, active) in gates.items():
            assert torch.equal(segment, expected_gates[name][0]) and torch.equal(
                active, expected_gates[name][1]
            )
        decisions.append(torch.cat([segment for segment, _ in gates.values()]))
        # first call eager, the second captures (the shape repeated), then replays
        assert (stand_in.captured, graphs.replays) == ((0, 0), (1, 1), (1, 2))[index]
    assert not torch.equal(decisions[0], decisions[1])  # the images' gates did choose differently
    # the valid-area mask is an input of the graph, not a constant: another area, another result
    other, _ = _encode(fast, images[2], SIZES[0])
    assert _rel(other, _encode(reference, images[2], SIZES[0])[0]) < FP32_TOLERANCE
    assert _rel(other, _encode(reference, images[2], SIZES[2])[0]) > 1e-4


def test_graphs_are_keyed_by_shape_and_adapter_state(images: torch.Tensor) -> None:
    reference, fast, stand_in = _models(images)
    graphs = fast.vision_encoder.graphs
    for _ in range(2):
        _encode(fast, images[0], SIZES[0])
    assert stand_in.captured == 1
    with disable_adapters(fast), disable_adapters(reference):  # the graph with adapters must not serve this
        plain, _ = _encode(fast, images[0], SIZES[0])
        assert stand_in.captured == 1 and graphs.replays == 1  # a new key: eager first
        plain, _ = _encode(fast, images[0], SIZES[0])
        expected, _ = _encode(reference, images[0], SIZES[0])
    assert stand_in.captured == 2
    assert _rel(plain, expected) < FP32_TOLERANCE
    graphs.max_graphs = 1
    pair = torch.cat([images[0], images[1]])
    for _ in range(2):  # a batch of two is another shape, and evicts the older graphs
        embeddings, _ = _encode(fast, pair, SIZES[0])
    assert stand_in.captured == 3 and len(graphs.graphs) == 1
    with torch.no_grad(), valid_input_sizes(reference, [SIZES[0]] * 2):
        assert _rel(embeddings, reference.get_image_embeddings(pair)) < FP32_TOLERANCE


def test_no_graph_when_gradients_or_training_are_on(images: torch.Tensor) -> None:
    _, fast, stand_in = _models(images)
    for _ in range(3):
        fast.vision_encoder(images[0])  # grad mode on
    fast.train()
    with torch.no_grad():
        for _ in range(3):
            fast.vision_encoder(images[0])
    assert stand_in.captured == 0 and fast.vision_encoder.graphs.replays == 0


def test_hq_sam_early_features_come_through_the_graph() -> None:
    from garasam.models import build_sam

    torch.manual_seed(0)
    model = build_sam("hq_tiny").eval()
    pixels = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        expected = model.vision_encoder(pixels)
    optimize_sam(model, dtype=torch.float32)
    model.vision_encoder.graphs = EncoderGraphs(model.vision_encoder, capture=StandInGraph())
    with torch.no_grad():
        for _ in range(3):
            out = model.vision_encoder(pixels)
    assert model.vision_encoder.graphs.replays == 2
    assert _rel(out.last_hidden_state, expected.last_hidden_state) < FP32_TOLERANCE
    assert _rel(out.intermediate_embeddings[0], expected.intermediate_embeddings[0]) < FP32_TOLERANCE


def test_the_graphed_encoder_has_no_data_dependent_step(images: torch.Tensor) -> None:
    """What a CUDA graph cannot hold (a host read of a device value, a shape that depends on the data,
    Python branching on a tensor) breaks a full-graph trace; the fused path traces whole, gates and
    valid-area pooling included, while the reference adapter path (row gathers) does not."""
    import torch._dynamo

    _, fast, _ = _models(images)
    encoder = fast.vision_encoder
    torch._dynamo.reset()
    traced = torch.compile(encoder.encode, fullgraph=True, backend="eager")
    with torch.no_grad(), valid_input_sizes(fast, [SIZES[0]]):
        embeddings, _ = traced(images[0])
        assert _rel(embeddings, encoder.encode(images[0])[0]) < FP32_TOLERANCE
    for layer in adapter_layers(fast).values():
        layer.fused = False
    torch._dynamo.reset()
    with pytest.raises(Exception, match="data-dependent"), torch.no_grad():
        torch.compile(encoder.encode, fullgraph=True, backend="eager")(images[0])
    torch._dynamo.reset()


def test_prediction_turns_graphs_on_and_bad_modes_are_refused(images: torch.Tensor) -> None:
    model = _tiny_sam(GARA, images[0])
    assert optimize_for_prediction(model, fast=None) is False  # a CPU model: default off
    assert optimize_for_prediction(model, fast=True) is True
    assert isinstance(model.vision_encoder.graphs, EncoderGraphs)
    with torch.no_grad():  # CPU inputs run eagerly under the real capture
        for _ in range(2):
            model.vision_encoder(images[0].to(torch.bfloat16))
    assert model.vision_encoder.graphs.captures == 0
    for mode in (True, "yes", 1):
        with pytest.raises(ConfigError, match="cuda_graphs must be"):
            optimize_sam(_tiny_sam(None, images[0]), cuda_graphs=mode)
    with pytest.raises(ValueError, match="max_graphs"):
        EncoderGraphs(model.vision_encoder, max_graphs=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("rank_kernel", [False, True])
def test_real_cuda_graphs_replay_what_eager_computes(images: torch.Tensor, rank_kernel: bool) -> None:
    if rank_kernel:
        pytest.importorskip("triton")
    model = _tiny_sam(GARA, images[0]).cuda()
    eager = copy.deepcopy(model)
    optimize_sam(model, cuda_graphs="capture", rank_kernel=rank_kernel)
    optimize_sam(eager, rank_kernel=rank_kernel)
    for pixels, size in zip(images.cuda(), SIZES * 2, strict=False):
        expected, expected_gates = _encode(eager, pixels, size)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            embeddings, gates = _encode(model, pixels, size)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert _rel(embeddings, expected) < 1e-3
        for name, (segment, _) in gates.items():
            assert torch.equal(segment, expected_gates[name][0])
    assert model.vision_encoder.graphs.captures == 1 and model.vision_encoder.graphs.replays == 2
