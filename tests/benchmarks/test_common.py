"""Timing and budget helpers of benchmarks/common.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from benchmarks.common import Budget, BudgetExceeded, Report, time_fn

CPU = torch.device("cpu")


def test_time_fn_takes_the_median_after_warm_up() -> None:
    calls = []
    timing = time_fn(lambda: calls.append(time.sleep(0.01)), CPU, warmup=2, repeats=5)
    assert len(calls) == 7 and timing.repeats == 5 and timing.warmup == 2
    assert 9 <= timing.median_ms <= 60 and timing.min_ms <= timing.median_ms <= timing.max_ms


def test_time_fn_shrinks_repeats_to_fit_max_seconds() -> None:
    calls = []
    timing = time_fn(lambda: calls.append(time.sleep(0.05)), CPU, warmup=5, repeats=50, max_seconds=0.3)
    assert timing.repeats == 3 and len(calls) <= 2 + 1 + 3  # two probing calls, at most one more warm-up


def test_budget_interrupts_a_step_that_overruns() -> None:
    budget = Budget(0.2)
    start = time.monotonic()
    with pytest.raises(BudgetExceeded), budget.enforce():
        time.sleep(5)
    assert time.monotonic() - start < 2
    with pytest.raises(BudgetExceeded):
        budget.check()


def test_report_rewrites_markdown_and_json_after_each_row(tmp_path: Path) -> None:
    report = Report(tmp_path / "r.md", "T", tmp_path / "r.json")
    report.section("S", ["a", "b"])
    report.add_row("S", {"a": 1.23456, "b": "x|y"})
    assert "| 1.23 | x/y |" in (tmp_path / "r.md").read_text()
    report.add_row("S", {"a": float("nan")})
    assert "| n/a |  |" in (tmp_path / "r.md").read_text()
    assert '"b": "x|y"' in (tmp_path / "r.json").read_text()
