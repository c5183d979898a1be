"""Argument types for every command line: a bad value stops argparse at once with the flag named.

One function per class of input, so that every flag taking a count, a probability, a rate or an
output folder is checked the same way (NaN, inf, zero, negatives, a file where a folder belongs).
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from pathlib import Path


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        name = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {name}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def int_at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An integer >= `minimum` (1 for counts and sizes, 0 for workers and areas), and at most
    `maximum` where a larger value would only exhaust memory or time (image sides, prompt grids)."""

    def parse(text: str) -> int:
        value = int(_number(text, int))
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}" if maximum is None else f"integer from {minimum} to {maximum}"
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)
# Seeds reach NumPy's and torch's generators, which take at most 32 / 64 bits: 10**20 ended in
# torch's "Overflow when unpacking long long".
MAX_SEED = 2**32 - 1
seed = int_at_least(0, MAX_SEED)
# Worker processes: more than this only exhausts the process table (each one imports torch).
MAX_WORKERS = 256
worker_count = int_at_least(0, MAX_WORKERS)


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, time budgets)."""
    value = float(_number(text, float))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (loss weights, where 0 switches a term off)."""
    value = float(_number(text, float))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text!r}")
    return value


def unit_float(text: str) -> float:
    """A finite number in [0, 1] (thresholds, probabilities)."""
    value = float(_number(text, float))
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text!r}")
    return value


def port(text: str) -> int:
    value = int(_number(text, int))
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (1-65535), got {value}")
    return value


def output_dir(text: str) -> Path:
    """A folder to write into: it may exist (as a folder) or not, but must not be a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
    return path


def output_file(text: str) -> Path:
    """A file to write: it may exist (it is replaced atomically) but must not be a folder."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name")
    return path


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def device(text: str) -> str:
    """auto (CUDA when available, else the CPU), cpu, cuda, cuda:N or mps: the same for every command."""
    if not _DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda, cuda:N or mps, got {text!r}")
    return text


def training_device(text: str) -> str:
    """`device`, less cuda:N: training picks each process's GPU itself (LOCAL_RANK, CUDA_VISIBLE_DEVICES)."""
    value = device(text)
    if value.startswith("cuda:") or value == "mps":
        raise argparse.ArgumentTypeError(
            f"{value}: training runs on auto, cpu or cuda; choose the GPU with CUDA_VISIBLE_DEVICES"
        )
    return value


class ListAction(argparse.Action):
    """A list of names or numbers, the same way on every command: the flag may be repeated and each
    value may hold several items separated by commas (`--only fog,snow --only rain`). `type` checks
    each item. Lists of paths are repeated flags without comma splitting (a path may hold a comma)."""

    def __init__(
        self, option_strings: list[str], dest: str, type: Callable[[str], object] = str, **kwargs: object
    ):
        self.item_type = type
        super().__init__(option_strings, dest, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        current = getattr(namespace, self.dest, None)
        items = [] if current is None or current is self.default else list(current)
        for part in str(values).split(","):
            part = part.strip()
            if not part:
                raise argparse.ArgumentError(self, f"an empty item in {values!r} (items are comma-separated)")
            try:
                items.append(self.item_type(part))
            except (ValueError, argparse.ArgumentTypeError) as err:
                integers = self.item_type is int or self.item_type.__name__.startswith("integer")
                kind = "integers" if integers else "items"
                raise argparse.ArgumentError(
                    self, f"expected comma-separated {kind}, got {values!r} ({err})"
                ) from None
        setattr(namespace, self.dest, items)
