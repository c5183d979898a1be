"""The training-step benchmark's CPU smoke run (the GPU numbers are measured elsewhere)."""

from __future__ import annotations

import pytest

from benchmarks.train_step import COLUMNS, main


@pytest.mark.filterwarnings("ignore:the bundled tiny SAM weights")
def test_cpu_smoke_run_prints_a_table(capsys: pytest.CaptureFixture) -> None:
    assert main(["--device", "cpu", "--models", "tiny", "--batch", "2", "--steps", "1", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    header = "| " + " | ".join(COLUMNS) + " |"
    assert out.startswith("# Training step on ") and header in out
    rows = [line for line in out.splitlines() if line.startswith("| tiny |")]
    assert [row.split(" | ")[1] for row in rows] == ["gara", "lora16"]
    assert all("failed" not in row and "fp32" in row for row in rows)
