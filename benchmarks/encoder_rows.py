"""Three row families of benchmarks/encoder.py, as mixins of its `EncoderBenchmark` (they time with its
`attempt` / `_time` and its options): prompted prediction end to end, the attention kernels alone,
and the summary of speed-ups."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn

from benchmarks.common import peak_gib
from benchmarks.encoder_models import relative_error
from garasam.fast.encoder import ATTENTION
from garasam.models import MODEL_TYPES

BOX_COUNTS = (1, 64)  # boxes per image in the prompted-prediction rows


class PromptedRows:
    """Embedding + mask decoder for 1 and 64 boxes per image, official and ours."""

    def _boxes(self, model_type: str, count: int) -> torch.Tensor:
        size = MODEL_TYPES[model_type].image_size
        generator = torch.Generator(device=self.o.device).manual_seed(count)
        corner = torch.rand(count, 2, device=self.o.device, generator=generator) * size / 2
        extent = (torch.rand(count, 2, device=self.o.device, generator=generator) + 0.25) * size / 2
        return torch.cat([corner, corner + extent], dim=-1)

    def _e2e_rows(
        self,
        model_type: str,
        config: str,
        encode: Callable[[torch.Tensor], torch.Tensor],
        decode: Callable[[torch.Tensor, torch.Tensor], object],
    ) -> None:
        image = self._check_input(model_type)
        for count in BOX_COUNTS:
            boxes = self._boxes(model_type, count)
            row: dict[str, Any] = {"model": model_type, "config": config, "boxes": count}

            def step(row: dict[str, Any] = row, boxes: torch.Tensor = boxes) -> None:
                with torch.no_grad():
                    embedding = encode(image)
                row["decoder ms"] = self._time(partial(decode, embedding, boxes)).median_ms
                timing = self._time(lambda: decode(encode(image), boxes))
                row["e2e ms/img"] = timing.median_ms
                row["peak GiB"] = peak_gib(timing)

            self.attempt("Prompted prediction (1 image)", row, step)

    def _official_e2e(self, model_type: str, sam: nn.Module, config: str, amp: bool) -> None:
        def encode(image: torch.Tensor) -> torch.Tensor:
            with torch.no_grad(), self._autocast(amp):
                return sam.image_encoder(image)

        def decode(embedding: torch.Tensor, boxes: torch.Tensor) -> object:
            # SamPredictor.predict_torch without the final upsampling.
            with torch.no_grad(), self._autocast(amp):
                sparse, dense = sam.prompt_encoder(points=None, boxes=boxes, masks=None)
                return sam.mask_decoder(
                    image_embeddings=embedding,
                    image_pe=sam.prompt_encoder.get_dense_pe(),
                    sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense,
                    multimask_output=False,
                )

        self._e2e_rows(model_type, config, encode, decode)

    def _ours_e2e(self, model_type: str, model: nn.Module) -> None:
        for config, amp in (("frozen", False), ("frozen + decoder bf16 autocast", True)):

            def decode(embedding: torch.Tensor, boxes: torch.Tensor, amp: bool = amp) -> object:
                with torch.no_grad(), self._autocast(amp):
                    return model(image_embeddings=embedding, input_boxes=boxes[None], multimask_output=False)

            self._e2e_rows(model_type, config, model.get_image_embeddings, decode)


class AttentionRows:
    """The attention op alone, every kernel at the largest model's shapes."""

    def run_attention(self) -> None:
        """The attention op alone at the largest model's global and windowed shapes."""
        model_type = max(self.o.models, key=lambda m: MODEL_TYPES[m].hidden_size)
        spec = MODEL_TYPES[model_type]
        batch = max(self.o.batches)
        grid = spec.image_size // 16
        windows = (-(-grid // spec.window_size)) ** 2
        heads, dim = spec.num_attention_heads, spec.hidden_size // spec.num_attention_heads
        shapes = {
            f"{model_type} global, batch {batch}": (batch, grid),
            f"{model_type} window, batch {batch}": (batch * windows, spec.window_size),
        }
        variants: dict[str, Callable[..., torch.Tensor]] = {
            "sdpa without rel-pos (floor)": lambda q, k, v, rh, rw, s: (
                nn.functional.scaled_dot_product_attention(q, k, v, scale=s)
            ),
            "bias (transformers' way)": ATTENTION["bias"],
            "fold": ATTENTION["fold"],
        }
        if self.o.compile:
            variants["flex (compiled)"] = torch.compile(ATTENTION["flex"], dynamic=False)
        generator = torch.Generator(device=self.o.device).manual_seed(1)
        for label, (n, side) in shapes.items():
            length = side * side
            shapes_of_args = [(n, heads, length, dim)] * 3 + [(n, heads, length, side)] * 2
            tensors = [
                torch.randn(*shape, device=self.o.device, generator=generator, dtype=self.o.dtype)
                for shape in shapes_of_args
            ]
            args = (*tensors, dim**-0.5)
            expected = ATTENTION["bias"](*(t[:1].float() for t in tensors), dim**-0.5)
            flops = 4 * n * heads * length * length * dim
            for name, fn in variants.items():
                row: dict[str, Any] = {"shape": f"{label} [{n}, {heads}, {length}, {dim}]", "variant": name}
                reference = None if "floor" in name else expected
                self.attempt(
                    "Attention kernels", row, partial(self._time_attention, row, fn, args, reference, flops)
                )

    def _time_attention(
        self,
        row: dict[str, Any],
        fn: Callable[..., torch.Tensor],
        args: tuple[Any, ...],
        expected: torch.Tensor | None,
        flops: int,
    ) -> None:
        if expected is not None:
            row["rel err"] = relative_error(fn(*args)[:1], expected)
        timing = self._time(partial(fn, *args))
        row["ms"] = timing.median_ms
        row["TFLOP/s (nominal)"] = flops / (timing.median_ms * 1e-3) / 1e12
        row["peak GiB"] = peak_gib(timing)


SUMMARY = "Summary (ratios are speed-ups: time of the denominator / time of the numerator)"


class SummaryRows:
    """The speed-up table: each path of ours against the official encoder, per model and batch."""

    def summary(self) -> None:
        for model_type in self.o.models:
            for batch in sorted(set(self.o.batches) | set(self.o.compile_batches)):
                for path, (b, c) in (
                    ("eager", ("frozen", "gara")),
                    ("rank kernel", ("frozen", "gara_kernel")),
                    ("CUDA graphs", ("frozen_graphs", "gara_graphs")),
                    ("kernel + graphs", ("frozen_graphs", "gara_kernel_graphs")),
                    ("compiled", ("frozen_compiled", "gara_compiled")),
                ):
                    t = {
                        key: self.ms_per_image.get((model_type, name, batch), math.nan)
                        for key, name in (
                            ("a", "official_fp32"),
                            ("a16", "official_bf16"),
                            ("b", b),
                            ("c", c),
                            ("d", "lora16" if path == "eager" else ""),
                        )
                    }
                    if math.isnan(t["b"]) and math.isnan(t["c"]):
                        continue
                    self.report.add_row(
                        SUMMARY,
                        {
                            "model": model_type,
                            "batch": batch,
                            "path": path,
                            "a fp32 ms": t["a"],
                            "a bf16 ms": t["a16"],
                            "b ms": t["b"],
                            "c ms": t["c"],
                            "d ms": t["d"],
                            "b/a": t["a"] / t["b"],
                            "c/a": t["a"] / t["c"],
                            "c/b": t["b"] / t["c"],
                            "b/a bf16": t["a16"] / t["b"],
                            "c/a bf16": t["a16"] / t["c"],
                            "GaRA overhead %": 100 * (t["c"] / t["b"] - 1),
                        },
                    )
