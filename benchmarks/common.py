"""Helpers shared by the benchmarks: timing, memory, device facts, FLOPs, time budget, reports.

Timing follows the usual rules for asynchronous devices: warm-up calls first (lazy init, autotune,
compilation stay out of the numbers), device events around each repeat, the median reported. A
time budget bounds a whole run; the report is rewritten after every row so that a run killed
half-way still leaves its results on disk.
"""

from __future__ import annotations

import json
import math
import platform
import signal
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from garasam.io import atomic_write_text

# Dense (no sparsity) bf16 tensor-core peaks from the vendor datasheets, in TFLOP/s, matched
# against torch.cuda.get_device_name(); the first matching key wins. Boost clocks: a real card
# sustains less (see measure_matmul_tflops for what a large GEMM reaches on the card at hand).
BF16_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H200 NVL", 835.0),
    ("H200", 989.4),
    ("GH200", 989.4),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.4),
    ("H800", 989.4),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
)


class BudgetExceeded(RuntimeError):
    """The run's time budget ran out before this measurement could finish."""


@dataclass
class Timing:
    """Per-call wall time of a measured function, in milliseconds."""

    median_ms: float
    min_ms: float
    max_ms: float
    repeats: int
    warmup: int
    first_call_ms: float  # includes lazy initialisation, autotuning and compilation
    peak_memory_bytes: int | None = None
    samples_ms: list[float] = field(default_factory=list)


class Budget:
    """A deadline for a whole benchmark run; None means unlimited."""

    def __init__(self, seconds: float | None) -> None:
        self.deadline = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float:
        return math.inf if self.deadline is None else self.deadline - time.monotonic()

    def check(self, needed: float = 0.0) -> None:
        """Raise BudgetExceeded unless at least `needed` seconds remain."""
        if self.remaining() < needed:
            raise BudgetExceeded(f"needs ~{needed:.0f} s, {max(self.remaining(), 0):.0f} s left")

    @contextmanager
    def enforce(self) -> Iterator[None]:
        """Interrupt the block with BudgetExceeded when the deadline passes (main thread, POSIX).

        Guards against steps whose length cannot be predicted, such as a compilation.
        """
        remaining = self.remaining()
        if math.isinf(remaining) or not hasattr(signal, "setitimer"):
            yield
            return
        if remaining <= 0:
            raise BudgetExceeded("time budget spent")

        def _expire(signum: int, frame: object) -> None:
            raise BudgetExceeded("time budget ran out during this step")

        previous = signal.signal(signal.SIGALRM, _expire)
        signal.setitimer(signal.ITIMER_REAL, remaining)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(
    fn: Callable[[], object],
    device: torch.device,
    *,
    warmup: int = 3,
    repeats: int = 10,
    max_seconds: float | None = None,
    min_repeats: int = 3,
) -> Timing:
    """Median time of `fn()` over `repeats` calls after `warmup` calls, plus peak device memory.

    CUDA: events around each call, peak memory from the allocator over warm-up and repeats.
    `max_seconds` shrinks warm-up (to no fewer than two calls) and repeats (to no fewer than
    `min_repeats`) so that one slow configuration cannot eat the run's budget.
    """
    cuda = device.type == "cuda"
    if cuda:
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    warmup = max(warmup, 2 if max_seconds is not None else 1)
    min_repeats = min(min_repeats, repeats)
    calls = []
    for _ in range(2 if max_seconds is not None else warmup):
        start = time.perf_counter()
        fn()  # the first call pays allocation, autotuning and compilation; the second is typical
        synchronize(device)
        calls.append(time.perf_counter() - start)
    per_call = calls[-1]
    done = 2 if max_seconds is not None else warmup
    if max_seconds is not None:
        affordable = int(max_seconds / max(per_call, 1e-9))
        repeats = max(min_repeats, min(repeats, affordable - max(warmup - done, 0)))
        warmup = max(done, min(warmup, affordable - repeats))
    for _ in range(warmup - done):
        fn()
    synchronize(device)
    samples = []
    for _ in range(repeats):
        if cuda:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(begin.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
    return Timing(
        median_ms=statistics.median(samples),
        min_ms=min(samples),
        max_ms=max(samples),
        repeats=repeats,
        warmup=warmup,
        first_call_ms=calls[0] * 1e3,
        peak_memory_bytes=torch.cuda.max_memory_allocated(device) if cuda else None,
        samples_ms=samples,
    )


def synchronises_host(fn: Callable[[], object], device: torch.device) -> bool | None:
    """Whether `fn()` makes the host wait for the device (`.item()`, `.nonzero()`, ...); None off CUDA.

    Runs `fn` once under CUDA's sync debug mode, which raises at the first synchronising call.
    """
    if device.type != "cuda":
        return None
    synchronize(device)
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        fn()
    except RuntimeError as err:
        if "synchroniz" not in str(err).lower():
            raise
        return True
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    return False


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def bf16_peak_tflops(device: torch.device) -> float | None:
    """Datasheet dense bf16 peak of a known GPU, or None (CPUs, unknown cards)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK_TFLOPS if key in name), None)


def measure_matmul_tflops(
    device: torch.device, dtype: torch.dtype = torch.bfloat16, size: int = 8192
) -> float:
    """What one large square GEMM reaches on this device: the practical compute ceiling."""
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    timing = time_fn(lambda: a @ b, device, warmup=3, repeats=10, max_seconds=5.0)
    return 2 * size**3 / (timing.median_ms * 1e-3) / 1e12


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of `fn` (matmuls, convolutions, attention) by torch's FlopCounterMode."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def free_device_memory(device: torch.device) -> None:
    """Return cached blocks so that the next configuration's peak memory is its own."""
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and device facts to print beside the numbers."""
    import transformers

    info: dict[str, Any] = {
        "device": device_name(device),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            memory_gib=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
            bf16_peak_tflops=bf16_peak_tflops(device),
        )
    else:
        info["threads"] = torch.get_num_threads()
    return info


class Report:
    """A Markdown report of titled tables plus a JSON twin, both rewritten atomically on each change."""

    def __init__(self, path: Path, title: str, json_path: Path | None = None) -> None:
        self.path = path
        self.json_path = json_path
        self.title = title
        self.preamble: list[str] = []
        self.sections: dict[str, tuple[list[str], list[dict[str, Any]]]] = {}
        self.notes: list[str] = []

    def add_preamble(self, line: str) -> None:
        self.preamble.append(line)
        self.write()

    def section(self, title: str, columns: list[str]) -> None:
        self.sections.setdefault(title, (columns, []))

    def add_row(self, section: str, row: dict[str, Any]) -> None:
        self.sections[section][1].append(row)
        self.write()

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.write()

    def write(self) -> None:
        lines = [f"# {self.title}", "", *self.preamble, ""]
        for title, (columns, rows) in self.sections.items():
            lines += [f"## {title}", "", *markdown_table(columns, rows), ""]
        if self.notes:
            lines += ["## Notes", "", *[f"- {n}" for n in self.notes], ""]
        atomic_write_text(self.path, "\n".join(lines))
        if self.json_path is not None:
            payload = {
                "title": self.title,
                "preamble": self.preamble,
                "sections": {t: rows for t, (_, rows) in self.sections.items()},
                "notes": self.notes,
            }
            atomic_write_text(self.json_path, json.dumps(payload, indent=1, default=str))


def markdown_table(columns: list[str], rows: list[dict[str, Any]]) -> list[str]:
    """The lines of a Markdown table of `rows` (missing cells empty), for reports and stdout alike."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(format_cell(row.get(c)) for c in columns) + " |" for row in rows]


def format_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value).replace("|", "/").replace("\n", " ")


def peak_gib(timing: Timing) -> float | None:
    """Peak device memory of a timing in GiB (None where it was not measured)."""
    return timing.peak_memory_bytes / 2**30 if timing.peak_memory_bytes else None


def first_line(err: BaseException) -> str:
    """The first line of an error, short enough for a table cell."""
    text = str(err).strip().splitlines()
    return text[0][:200] if text else ""
