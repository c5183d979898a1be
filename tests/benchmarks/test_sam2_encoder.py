"""benchmarks/sam2_encoder.py runs start to finish on a CPU with the mini SAM 2.1."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import sam2_encoder


def test_smoke_run_writes_every_row(tmp_path: Path) -> None:
    out = tmp_path / "sam2.md"
    argv = ["--device", "cpu", "--models", "sam2.1_mini", "--batch", "1", "--repeats", "1", "--warmup", "1"]
    argv += ["--max-seconds", "1", "--configs", "official_fp32,frozen,gara", "--out", str(out)]
    assert sam2_encoder.main(argv) == 0
    rows = next(iter(json.loads(out.with_suffix(".json").read_text())["sections"].values()))
    assert [r["config"] for r in rows] == ["official_fp32", "frozen", "gara"]
    assert all(r["status"] == "ok" and r["ms/img"] > 0 for r in rows), rows
    assert rows[0]["rel err"] < 1e-6  # the official fp32 maps are ours in fp32: the conversion is exact
    assert 0 < rows[1]["rel err"] < 0.05  # bf16 autocast
