"""CUDA graphs for the fast encoder at inference: capture an input shape once it repeats, then replay.
(`FrameGraphs`, at the end: the same for SAM 2.1's per-frame encoder in the video tracker.)

At batch 1 the encoder's GPU work per block is too small to hide the CPU time spent launching it,
and every adapter adds a handful of small operators (gates, the fused GEMM, the rank update). A
CUDA graph replays every kernel of the encoder with one launch. The fast path was built for it: no
host synchronisation and no shape that depends on the data; the gates' decisions stay on the
device as masks, so one graph serves images whose gates choose differently.

What a graph fixes at capture is its key: the input's shape, dtype and device, the autocast and
inference-mode state, the shape of the valid-token mask the gates pool over (`valid_input_sizes`;
the mask itself is a graph input, copied in on every call) and which adapters are disabled. The
first call with a key runs eagerly, so a one-off shape costs no capture; the second captures (a
warm-up forward and the captured one); later calls replay. Each graph holds its own memory pool;
the `max_graphs` most recently used are kept.

After a replay each adapter's `gate_state` reads the graph's own output tensors: valid until the
next encoder call, like the embeddings of a single forward (`gate_summary` copies what it reports).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import torch
from torch import nn

from garasam.adapters.layers import AdapterLinear, GateState

Tensors = tuple[torch.Tensor, ...]
# capture(fn, static inputs) -> (replay, static outputs): replay() recomputes fn on the current
# contents of the inputs and overwrites the outputs in place.
Capture = Callable[[Callable[..., Tensors], Tensors], tuple[Callable[[], None], Tensors]]


def capture_cuda_graph(fn: Callable[..., Tensors], inputs: Tensors) -> tuple[Callable[[], None], Tensors]:
    """Capture `fn(*inputs)` in a `torch.cuda.CUDAGraph` after one warm-up call on a side stream
    (lazy initialisation, cuBLAS workspaces and Triton compilation must happen outside a capture)."""
    stream = torch.cuda.Stream(device=inputs[0].device)
    stream.wait_stream(torch.cuda.current_stream(inputs[0].device))
    with torch.cuda.stream(stream):
        fn(*inputs)
    torch.cuda.current_stream(inputs[0].device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = fn(*inputs)
    return graph.replay, outputs


@dataclass
class _Graph:
    replay: Callable[[], None]
    inputs: Tensors  # pixel values, then the valid-token mask when the key has one
    outputs: Tensors  # embeddings, [early block,] then (segment, active) per gated adapter
    early: bool  # whether outputs[1] is the early block's features (HQ-SAM, RobustSAM)
    gated: list[AdapterLinear]  # the adapters whose gate states the outputs carry, in order


class EncoderGraphs:
    """Per-key CUDA graphs of a `FastSamVisionEncoder`'s `encode` (see the module docstring).

    `capture` replaces `capture_cuda_graph`, e.g. to check the bookkeeping on a CPU; without it only
    CUDA inputs are captured.
    """

    def __init__(self, encoder: nn.Module, max_graphs: int = 4, capture: Capture | None = None) -> None:
        if max_graphs < 1:
            raise ValueError(f"max_graphs must be at least 1, got {max_graphs}")
        self.adapters = [m for m in encoder.modules() if isinstance(m, AdapterLinear)]
        self.pooled = [m for m in self.adapters if m.token_grid is not None]
        self.max_graphs = max_graphs
        self.capture = capture
        self.graphs: OrderedDict[Hashable, _Graph] = OrderedDict()
        self.seen: OrderedDict[Hashable, None] = OrderedDict()
        self.captures = 0
        self.replays = 0

    def __call__(
        self, encoder: nn.Module, pixel_values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`encoder.encode(pixel_values)`, through a graph when the key has been seen before (then the
        outputs are the graph's own tensors, overwritten by its next replay)."""
        key = self._key(encoder, pixel_values)
        if key is None:
            return encoder.encode(pixel_values)
        graph = self.graphs.get(key)
        if graph is None:
            if key not in self.seen:
                self.seen[key] = None
                while len(self.seen) > 16 * self.max_graphs:
                    self.seen.popitem(last=False)
                return encoder.encode(pixel_values)
            graph = self._capture(encoder, pixel_values)  # a capture records kernels, runs none
            self.graphs[key] = graph
            while len(self.graphs) > self.max_graphs:
                self.graphs.popitem(last=False)
        self.graphs.move_to_end(key)
        graph.inputs[0].copy_(pixel_values)
        if len(graph.inputs) > 1:
            graph.inputs[1].copy_(self.pooled[0].valid_tokens)
        graph.replay()
        self.replays += 1
        return self._unpack(graph)

    def _key(self, encoder: nn.Module, pixel_values: torch.Tensor) -> Hashable | None:
        """What the graph depends on, or None when this call must run eagerly."""
        if torch.is_grad_enabled() or encoder.training:
            return None
        if self.capture is None and pixel_values.device.type != "cuda":
            return None
        valid = self.pooled[0].valid_tokens if self.pooled else None
        if any(layer.valid_tokens is not valid for layer in self.pooled):
            return None  # the layers were told different areas: not SAM 1's single token grid
        device = pixel_values.device.type
        return (
            tuple(pixel_values.shape),
            pixel_values.dtype,
            pixel_values.device,
            None if valid is None else (tuple(valid.shape), valid.dtype),
            torch.is_autocast_enabled(device),
            torch.get_autocast_dtype(device),
            torch.is_inference_mode_enabled(),
            tuple(layer.disabled for layer in self.adapters),
        )

    def _capture(self, encoder: nn.Module, pixel_values: torch.Tensor) -> _Graph:
        inputs: Tensors = (pixel_values.clone(),)
        caller_valid = self.pooled[0].valid_tokens if self.pooled else None
        if caller_valid is not None:
            inputs += (caller_valid.clone(),)
        early = getattr(encoder, "early_block", None) is not None

        def run(pixels: torch.Tensor, valid: torch.Tensor | None = None) -> Tensors:
            for layer in self.pooled:
                layer.valid_tokens = valid
            for layer in self.adapters:
                layer.gate_state = None
            embeddings, early_out = encoder.encode(pixels)
            states = [t for layer in self.adapters if layer.gate_state is not None for t in _state(layer)]
            return (embeddings, *((early_out,) if early else ()), *states)

        try:
            replay, outputs = (self.capture or capture_cuda_graph)(run, inputs)
        finally:
            for layer in self.pooled:
                layer.valid_tokens = caller_valid
        self.captures += 1
        gated = [layer for layer in self.adapters if layer.gate_state is not None]
        return _Graph(replay, inputs, outputs, early, gated)

    def _unpack(self, graph: _Graph) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The graph's own embeddings (the caller copies them out before the next call), and the
        adapters' gate states pointed at the graph's outputs."""
        states = graph.outputs[2 if graph.early else 1 :]
        for layer in self.adapters:
            layer.gate_state = None
        for index, layer in enumerate(graph.gated):
            layer.gate_state = GateState(states[2 * index], states[2 * index + 1], owned_by_graph=True)
        return graph.outputs[0], graph.outputs[1] if graph.early else None


def _state(layer: AdapterLinear) -> Tensors:
    state = layer.gate_state
    assert state is not None
    return state.segment, state.active


class FrameGraphs:
    """CUDA graphs of SAM 2.1's per-frame image encoder in the video tracker (`get_image_features`
    of a `Sam2VideoModel`): every frame of a video has one input shape, so after the first frame
    runs eagerly and the second captures, every later frame replays one graph.

    Unlike `EncoderGraphs`, the outputs are copied out of the graph (a tracker keeps each frame's
    features for its memory while later frames replay), and so are the gated adapters' states.
    The key is the input's shape, dtype and device, the autocast and inference-mode state and which
    adapters are disabled; gradients, training mode, or a CPU input without `capture` run eagerly.
    `capture` replaces `capture_cuda_graph`, e.g. to check the bookkeeping on a CPU.
    """

    def __init__(self, model: nn.Module, max_graphs: int = 2, capture: Capture | None = None) -> None:
        self.encode = model.get_image_features  # the model's own (bound) method
        self.adapters = [m for m in model.vision_encoder.modules() if isinstance(m, AdapterLinear)]
        self.max_graphs, self.capture = max_graphs, capture
        self.graphs: OrderedDict[Hashable, tuple[Callable[[], None], Tensors, Tensors, int, type, list]] = (
            OrderedDict()
        )
        self.seen: set[Hashable] = set()
        self.captures = 0
        self.replays = 0

    def __call__(self, pixel_values: torch.Tensor, **kwargs: object) -> object:
        key = None if kwargs.keys() - {"return_dict"} else self._key(pixel_values)
        if key is None:
            return self.encode(pixel_values, **kwargs)
        if key not in self.graphs:
            if key not in self.seen:
                self.seen.add(key)
                return self.encode(pixel_values, **kwargs)
            self.graphs[key] = self._capture(pixel_values)
            while len(self.graphs) > self.max_graphs:
                self.graphs.popitem(last=False)
        self.graphs.move_to_end(key)
        replay, inputs, outputs, levels, kind, gated = self.graphs[key]
        inputs[0].copy_(pixel_values)
        replay()
        self.replays += 1
        copies = [t.clone() for t in outputs]
        for layer in self.adapters:
            layer.gate_state = None
        states = copies[2 * levels :]
        for index, layer in enumerate(gated):
            layer.gate_state = GateState(states[2 * index], states[2 * index + 1])
        return kind(fpn_hidden_states=copies[:levels], fpn_position_encoding=copies[levels : 2 * levels])

    def _key(self, pixel_values: torch.Tensor) -> Hashable | None:
        if torch.is_grad_enabled() or any(layer.training for layer in self.adapters):
            return None
        if self.capture is None and pixel_values.device.type != "cuda":
            return None
        device = pixel_values.device.type
        return (
            tuple(pixel_values.shape),
            pixel_values.dtype,
            pixel_values.device,
            torch.is_autocast_enabled(device),
            torch.get_autocast_dtype(device),
            torch.is_inference_mode_enabled(),
            tuple(layer.disabled for layer in self.adapters),
        )

    def _capture(self, pixel_values: torch.Tensor) -> tuple:
        found: dict[str, object] = {}

        def run(pixels: torch.Tensor) -> Tensors:
            for layer in self.adapters:
                layer.gate_state = None
            out = self.encode(pixels, return_dict=True)
            found["levels"], found["kind"] = len(out.fpn_hidden_states), type(out)
            found["gated"] = [layer for layer in self.adapters if layer.gate_state is not None]
            states = [t for layer in found["gated"] for t in _state(layer)]
            return (*out.fpn_hidden_states, *out.fpn_position_encoding, *states)

        inputs: Tensors = (pixel_values.clone(),)
        replay, outputs = (self.capture or capture_cuda_graph)(run, inputs)
        self.captures += 1
        return replay, inputs, outputs, found["levels"], found["kind"], found["gated"]
