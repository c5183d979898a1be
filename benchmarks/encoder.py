"""SAM image-encoder speed: the official `segment_anything` code against our fast path.

On one device and one random input per batch size (random weights, the model's image size):

- (a) the official image encoder in fp32 (the reference) and under bf16 autocast;
- transformers' SamVisionEncoder (SDPA) under bf16 autocast, as it ships;
- (b) our frozen SAM on the fast path (`garasam.fast.encoder.optimize_sam`, bf16);
- (c) GaRA-SAM (GaRAConfig defaults, non-zero B, space gates calibrated to a 50/50 mix), fused;
  also with the reference adapter path (selected space only, host sync) for the trade-off;
- (b) and (c) replayed as CUDA graphs (`cuda_graphs="capture"`), (c) with the Triton rank kernel;
- (d) LoRA-16, fused;
- with `--compile`: (b) and (c) compiled per block; (b) as one CUDA graph on request;
- prompted prediction end to end (embedding + decoder, 1 and 64 boxes per image);
- with `--attention-bench`: the attention kernels alone at the largest model's shapes.

Each configuration reports ms/image, images/s, TFLOP/s from the model's nominal FLOPs (the same
count for every configuration, so the rate is useful work), the fraction of the device's bf16
peak, peak memory and, for ours, the relative error against the same weights in fp32 on the
reference path. A configuration that fails (out of memory, compile error) or does not fit the
`--time-budget` is reported as such and the run goes on; the report is rewritten after every row.

    python benchmarks/encoder.py --device cuda --models vit_b,vit_h --batch 1,8 --out encoder.md
    python benchmarks/encoder.py --device cpu --models tiny --batch 1,2 --repeats 2 --warmup 1
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

if __package__ in (None, ""):  # run as a script: make `benchmarks` and an uninstalled `garasam` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.common import (  # noqa: E402
    Budget,
    BudgetExceeded,
    Report,
    Timing,
    bf16_peak_tflops,
    environment,
    first_line,
    free_device_memory,
    measure_matmul_tflops,
    peak_gib,
    synchronises_host,
    synchronize,
    time_fn,
)
from benchmarks.encoder_models import build_official_sam, build_ours, encoder_flops, relative_error  # noqa: E402
from benchmarks.encoder_rows import SUMMARY, AttentionRows, PromptedRows, SummaryRows  # noqa: E402
from garasam.adapters import (  # noqa: E402
    GaRAConfig,
    LoRAConfig,
    adapter_layers,
    gate_summary,
)
from garasam.adapters.config import AdapterConfig  # noqa: E402
from garasam.fast.cuda_graphs import EncoderGraphs  # noqa: E402
from garasam.fast.encoder import attention_kinds, optimize_sam  # noqa: E402
from garasam.kernels import rank_kernel  # noqa: E402
from garasam.models import MODEL_TYPES  # noqa: E402

T = TypeVar("T")


CONFIGS: dict[str, str] = {
    "official_fp32": "(a) official segment_anything, fp32",
    "official_bf16": "official, bf16 autocast",
    "hf_bf16": "transformers SamVisionEncoder (SDPA), bf16 autocast",
    "frozen": "(b) ours, fast path",
    "frozen_graphs": "(b) replayed as a CUDA graph (`cuda_graphs='capture'`, what prediction uses)",
    "gara": "(c) ours + GaRA, fused & masked",
    "gara_ref": "ours + GaRA, reference adapters (selected space, host sync)",
    "gara_kernel": "(c) with the Triton rank kernel (switched-off components skipped, in place)",
    "gara_graphs": "(c) replayed as a CUDA graph",
    "gara_kernel_graphs": "(c) with the rank kernel, replayed as a CUDA graph",
    "lora16": "(d) ours + LoRA-16, fused",
    "frozen_compiled": "(b) compiled per block",
    "gara_compiled": "(c) compiled per block",
    "frozen_cudagraphs": "(b) whole encoder compiled, CUDA graphs",
}
EAGER_CONFIGS = (
    "official_fp32",
    "official_bf16",
    "hf_bf16",
    "frozen",
    "frozen_graphs",
    "gara",
    "gara_ref",
    "gara_kernel",
    "gara_graphs",
    "gara_kernel_graphs",
    "lora16",
)
# the variants one built model is timed in: (b) and (c) switch adapter paths and graphs in place
VARIANTS = {
    "frozen": ("frozen", "frozen_graphs"),
    "gara": ("gara", "gara_ref", "gara_kernel", "gara_graphs", "gara_kernel_graphs"),
}
COMPILED_CONFIGS = ("frozen_compiled", "gara_compiled", "frozen_cudagraphs")
NO_KERNEL = "skipped: the rank kernel needs Triton and a CUDA device (or TRITON_INTERPRET=1 on a CPU)"
ENCODER_COLUMNS = [
    "model",
    "config",
    "batch",
    "ms/img",
    "img/s",
    "TFLOP/s",
    "% bf16 peak",
    "peak GiB",
    "rel err",
    "repeats",
    "first call s",
    "status",
]
SUMMARY_COLUMNS = [
    "model",
    "batch",
    "path",
    "a fp32 ms",
    "a bf16 ms",
    "b ms",
    "c ms",
    "d ms",
    "b/a",
    "c/a",
    "c/b",
    "b/a bf16",
    "c/a bf16",
    "GaRA overhead %",
]
E2E_COLUMNS = ["model", "config", "boxes", "e2e ms/img", "decoder ms", "peak GiB", "status"]
ATTENTION_COLUMNS = ["shape", "variant", "ms", "TFLOP/s (nominal)", "rel err", "peak GiB", "status"]


# --------------------------------------------------------------------------------------------
# Models


# --------------------------------------------------------------------------------------------
# The benchmark


@dataclass
class Options:
    device: torch.device
    models: list[str]
    batches: list[int]
    configs: list[str]
    warmup: int
    repeats: int
    max_seconds: float
    dtype: torch.dtype
    compile: bool
    compile_batches: list[int]
    e2e: bool
    attention_bench: bool
    profile: Path | None
    profile_model: str | None


class EncoderBenchmark(PromptedRows, AttentionRows, SummaryRows):
    def __init__(self, options: Options, budget: Budget, report: Report) -> None:
        self.o = options
        self.budget = budget
        self.report = report
        self.peak = bf16_peak_tflops(options.device)
        self.ms_per_image: dict[tuple[str, str, int], float] = {}
        generator = torch.Generator(device=options.device).manual_seed(0)
        self.inputs: dict[str, dict[int, torch.Tensor]] = {}
        for model_type in options.models:
            size = MODEL_TYPES[model_type].image_size
            self.inputs[model_type] = {
                b: torch.randn(b, 3, size, size, device=options.device, generator=generator)
                for b in sorted(set(options.batches) | set(options.compile_batches))
            }

    # -- plumbing ---------------------------------------------------------------------------

    def attempt(
        self, section: str, row: dict[str, Any], step: Callable[[], T], quiet: bool = False
    ) -> T | None:
        """Run one step and return its result; whatever happens, its row lands in the report.

        A failure (out of memory, compile error, spent budget) becomes the row's status and the
        run goes on. `quiet` rows (model builds) are reported only when they fail.
        """
        result = None
        try:
            with self.budget.enforce():
                result = step()
            row.setdefault("status", "ok")
        except BudgetExceeded as err:
            row["status"] = f"skipped: {err}"
        except torch.cuda.OutOfMemoryError:
            row["status"] = "failed: out of memory"
        except Exception as err:  # noqa: BLE001 - one failing configuration must not end the run
            row["status"] = f"failed: {type(err).__name__}: {first_line(err)}"
            traceback.print_exc()
        finally:
            free_device_memory(self.o.device)
        if not (quiet and row["status"] == "ok"):
            self.report.add_row(section, row)
        print(" | ".join(f"{k}={v}" for k, v in row.items() if k != "samples_ms"), flush=True)
        return result

    def _time(self, fn: Callable[[], object]) -> Timing:
        self.budget.check(1.0)
        limit = min(self.o.max_seconds, max(self.budget.remaining() - 1.0, 1.0))
        return time_fn(fn, self.o.device, warmup=self.o.warmup, repeats=self.o.repeats, max_seconds=limit)

    def _time_encoder(
        self,
        model_type: str,
        config: str,
        batch: int,
        run: Callable[[torch.Tensor], torch.Tensor],
        reference: tuple[torch.Tensor, torch.Tensor] | None = None,
        describe: Callable[[], str] | None = None,
    ) -> None:
        """One encoder row: the relative error on `reference` = (pixels, fp32 embeddings of the
        first images), then the timing on the batch; `describe` may replace the status."""
        row: dict[str, Any] = {"model": model_type, "config": config, "batch": batch}

        def step() -> None:
            if reference is not None:
                pixels, expected = reference
                row["rel err"] = relative_error(run(pixels)[: len(expected)], expected)
            timing = self._time(partial(run, self.inputs[model_type][batch]))
            per_image = timing.median_ms / batch
            tflops = encoder_flops(model_type) / (per_image * 1e-3) / 1e12
            row.update(
                {
                    "ms/img": per_image,
                    "img/s": 1e3 / per_image,
                    "TFLOP/s": tflops,
                    "% bf16 peak": 100 * tflops / self.peak if self.peak else None,
                    "peak GiB": peak_gib(timing),
                    "repeats": timing.repeats,
                    "first call s": timing.first_call_ms / 1e3,
                    "samples_ms": timing.samples_ms,
                }
            )
            self.ms_per_image[(model_type, config, batch)] = per_image
            if describe is not None:
                row["status"] = describe()

        self.attempt("Image encoder", row, step)

    def _autocast(self, enabled: bool) -> contextlib.AbstractContextManager[None]:
        return torch.autocast(self.o.device.type, dtype=torch.bfloat16, enabled=enabled)

    def _check_input(self, model_type: str) -> torch.Tensor:
        inputs = self.inputs[model_type]
        return inputs[min(inputs)][:1]

    # -- encoders ---------------------------------------------------------------------------

    def run_model(self, model_type: str) -> None:
        wanted = [c for c in EAGER_CONFIGS if c in self.o.configs]
        if "official_fp32" in wanted or "official_bf16" in wanted:
            self._official(model_type, wanted)
        if "hf_bf16" in wanted:
            self._ours(model_type, "hf_bf16", None)
        for config, adapter in (("frozen", None), ("gara", GaRAConfig())):
            if set(VARIANTS[config]) & set(wanted):
                self._ours(model_type, config, adapter)
        if "lora16" in wanted:
            self._ours(model_type, "lora16", LoRAConfig(rank=16))

    def run_compiled(self, model_type: str) -> None:
        for config in COMPILED_CONFIGS:
            if config not in self.o.configs:
                continue
            adapter = GaRAConfig() if config.startswith("gara") else None
            for batch in self.o.compile_batches:
                self._compiled(model_type, config, batch, adapter)

    def _official(self, model_type: str, wanted: list[str]) -> None:
        check = self._check_input(model_type)

        def build() -> tuple[nn.Module, torch.Tensor]:
            sam = build_official_sam(model_type, self.o.device)
            with torch.no_grad():
                return sam, sam.image_encoder(check)

        built = self.attempt(
            "Image encoder", {"model": model_type, "config": "official (build)"}, build, True
        )
        if built is None:
            return
        sam, expected = built
        # Cheap rows first: fp32 at the largest batch is the slowest measurement of the run.
        order = [("official_bf16", True), ("official_fp32", False)]
        plan = [(c, amp, b) for b in sorted(self.o.batches) for c, amp in order if c in wanted]
        plan.sort(key=lambda item: (item[0] == "official_fp32" and item[2] == max(self.o.batches), item[2]))
        for config, amp, batch in plan:

            def run(x: torch.Tensor, amp: bool = amp) -> torch.Tensor:
                with torch.no_grad(), self._autocast(amp):
                    return sam.image_encoder(x)

            self._time_encoder(model_type, config, batch, run, (check, expected))
        if self.o.e2e:
            for config, amp in order:
                if config in wanted:
                    self._official_e2e(model_type, sam, config, amp)

    def _ours(self, model_type: str, config: str, adapter: AdapterConfig | None) -> None:
        check = self._check_input(model_type)

        def build() -> tuple[nn.Module, torch.Tensor]:
            model = build_ours(model_type, self.o.device, adapter, check)
            with torch.no_grad():
                expected = model.get_image_embeddings(check)  # fp32, reference path
            if config != "hf_bf16":
                optimize_sam(model, dtype=self.o.dtype)
            return model, expected

        built = self.attempt(
            "Image encoder", {"model": model_type, "config": f"{config} (build)"}, build, True
        )
        if built is None:
            return
        model, expected = built
        amp = config == "hf_bf16"

        def run(x: torch.Tensor) -> torch.Tensor:
            with self._autocast(amp):
                return model.get_image_embeddings(x)

        def describe(batch: int) -> str:
            x = self.inputs[model_type][batch]
            sync = synchronises_host(partial(run, x), self.o.device)
            status = "ok" if sync is None else f"ok; {'host syncs' if sync else 'no host sync'}"
            if isinstance(adapter, GaRAConfig):
                run(x)
                fractions = [s.high_fraction.mean().item() for s in gate_summary(model, batch)]
                status += f"; high-space fraction {sum(fractions) / len(fractions):.2f}"
            return status

        variants = [v for v in VARIANTS.get(config, (config,)) if v in self.o.configs]
        for variant in variants:
            if "kernel" in variant and not rank_kernel.available(self.o.device):
                row = {"model": model_type, "config": variant, "status": NO_KERNEL}
                self.report.add_row("Image encoder", row)
                continue
            for layer in adapter_layers(model).values():
                layer.fused = variant != "gara_ref"
                layer.rank_kernel = "kernel" in variant
            if config != "hf_bf16":
                model.vision_encoder.graphs = (
                    EncoderGraphs(model.vision_encoder) if "graphs" in variant else None
                )
            for batch in self.o.batches:
                self._time_encoder(
                    model_type, variant, batch, run, (check, expected), partial(describe, batch)
                )
                if self.o.profile is not None and variant == "gara" and self._profile_here(model_type, batch):
                    self._profile(
                        partial(run, self.inputs[model_type][batch]), f"{model_type} gara batch {batch}"
                    )
        if self.o.e2e and config == "frozen":
            self._ours_e2e(model_type, model)

    def _compiled(self, model_type: str, config: str, batch: int, adapter: AdapterConfig | None) -> None:
        """A compiled model, compiled on the timed batch's shape, with the default attention kernels.

        The error is checked on the batch's first image (another shape would compile again).
        """
        x = self.inputs[model_type][batch]
        check = x[:1]
        cuda_graphs = config == "frozen_cudagraphs"

        def build() -> tuple[nn.Module, torch.Tensor, str]:
            model = build_ours(model_type, self.o.device, adapter, check)
            with torch.no_grad():
                expected = model.get_image_embeddings(check)
            optimize_sam(
                model,
                dtype=self.o.dtype,
                compile=not cuda_graphs,
                cuda_graphs="compile" if cuda_graphs else False,
            )
            start = time.perf_counter()
            model.get_image_embeddings(x)
            synchronize(self.o.device)
            seconds = time.perf_counter() - start
            return model, expected, f"ok; compiled in {seconds:.0f} s; attention {attention_kinds(model)}"

        row = {"model": model_type, "config": f"{config} (build)", "batch": batch}
        built = self.attempt("Image encoder", row, build, quiet=True)
        if built is not None:
            model, expected, status = built
            self._time_encoder(
                model_type, config, batch, model.get_image_embeddings, (x, expected), lambda: status
            )

    # -- profile and summary -----------------------------------------------------------------

    def _profile_here(self, model_type: str, batch: int) -> bool:
        target = self.o.profile_model or max(self.o.models, key=lambda m: MODEL_TYPES[m].hidden_size)
        return model_type == target and batch == max(self.o.batches)

    def _profile(self, run: Callable[[], object], label: str) -> None:
        """One profiled iteration, top 15 operators by device time, written to --profile."""
        from torch.profiler import ProfilerActivity, profile

        from garasam.io import atomic_write_text

        cuda = self.o.device.type == "cuda"
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        try:
            with self.budget.enforce():
                run()
                with profile(activities=activities) as prof:
                    run()
                    if cuda:
                        torch.cuda.synchronize()
            sort = "device_time_total" if cuda else "cpu_time_total"
            table = prof.key_averages().table(sort_by=sort, row_limit=15)
            atomic_write_text(self.o.profile, f"# torch.profiler, one iteration: {label}\n\n{table}\n")
            self.report.note(f"profile of {label} written to {self.o.profile}")
        except Exception as err:  # noqa: BLE001 - the profile is an extra; the timings stand
            self.report.note(f"profile of {label} failed: {type(err).__name__}: {first_line(err)}")


# --------------------------------------------------------------------------------------------
# Command line


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _name_list(choices: list[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [v for v in text.split(",") if v]
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"unknown {unknown or text!r}; choose from {', '.join(choices)}")
        return names

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", type=_name_list(list(MODEL_TYPES)), default=["vit_b", "vit_l", "vit_h"])
    parser.add_argument("--batch", type=_int_list, default=[1, 8])
    parser.add_argument("--configs", type=_name_list(list(CONFIGS)), default=list(EAGER_CONFIGS))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--max-seconds", type=float, default=20.0, help="cap on one timing (fewer repeats)")
    parser.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], default="bfloat16")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time frozen_compiled and gara_compiled (implied by naming a compiled config in --configs)",
    )
    parser.add_argument("--compile-batch", type=_int_list, default=None, help="default: the largest --batch")
    parser.add_argument("--no-e2e", action="store_true", help="skip prompted prediction")
    parser.add_argument("--attention-bench", action="store_true", help="time the attention kernels alone")
    parser.add_argument(
        "--profile", type=Path, default=None, help="write a torch.profiler table of GaRA here"
    )
    parser.add_argument("--profile-model", default=None, help="default: the largest model of --models")
    parser.add_argument("--time-budget", type=float, default=None, help="seconds for the whole run")
    parser.add_argument("--out", type=Path, default=Path("encoder_benchmark.md"))
    parser.add_argument("--json", type=Path, default=None, help="default: --out with .json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("encoder.py: --device cuda but no CUDA device is available", file=sys.stderr)
        return 2
    configs = list(args.configs)
    compile_ = args.compile or any(c in COMPILED_CONFIGS for c in configs)
    if args.compile and not any(c in COMPILED_CONFIGS for c in configs):
        configs += ["frozen_compiled", "gara_compiled"]
    options = Options(
        device=device,
        models=args.models,
        batches=args.batch,
        configs=configs,
        warmup=args.warmup,
        repeats=args.repeats,
        max_seconds=args.max_seconds,
        dtype=getattr(torch, args.dtype),
        compile=compile_,
        compile_batches=(args.compile_batch or [max(args.batch)]) if compile_ else [],
        e2e=not args.no_e2e,
        attention_bench=args.attention_bench,
        profile=args.profile,
        profile_model=args.profile_model,
    )
    if compile_:  # one process compiles several models and block kinds: room for all their graphs
        dynamo_config = importlib.import_module("torch._dynamo").config
        dynamo_config.cache_size_limit = max(dynamo_config.cache_size_limit, 64)
    budget = Budget(args.time_budget)
    report = Report(args.out, "SAM image encoder benchmark", args.json or args.out.with_suffix(".json"))
    env = environment(device)
    report.add_preamble("Environment: " + ", ".join(f"{k} {v}" for k, v in env.items()))
    report.add_preamble(
        "Random weights, random inputs at the model's image size, median over repeats after warm-up "
        f"({args.warmup} warm-up, {args.repeats} repeats, fewer when one timing would exceed "
        f"{args.max_seconds:.0f} s). Ours runs in {args.dtype}."
    )
    report.add_preamble(
        "Configurations: "
        + "; ".join(f"`{name}` {text}" for name, text in CONFIGS.items() if name in configs)
        + "."
    )
    report.add_preamble(
        "Nominal TFLOP per image: "
        + ", ".join(f"{m} {encoder_flops(m) / 1e12:.3f}" for m in args.models)
        + " (the same count for every configuration)."
    )
    if device.type == "cuda":
        with contextlib.suppress(Exception):
            report.add_preamble(
                f"A large bf16 GEMM reaches {measure_matmul_tflops(device):.0f} TFLOP/s here."
            )
    for section, columns in (
        ("Image encoder", ENCODER_COLUMNS),
        ("Prompted prediction (1 image)", E2E_COLUMNS),
        ("Attention kernels", ATTENTION_COLUMNS),
    ):
        report.section(section, columns)
    report.section(SUMMARY, SUMMARY_COLUMNS)
    bench = EncoderBenchmark(options, budget, report)
    for model_type in options.models:
        bench.run_model(model_type)
    if options.compile:
        for model_type in options.models:
            bench.run_compiled(model_type)
    if options.attention_bench:
        bench.run_attention()
    bench.summary()
    report.note(f"total wall time {time.monotonic() - started:.0f} s")
    print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
