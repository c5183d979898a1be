"""benchmarks/video.py runs start to finish on a CPU with the mini SAM 2.1, the official predictor as baseline."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import video


def test_smoke_run_writes_every_row(tmp_path: Path) -> None:
    out = tmp_path / "video.md"
    argv = [
        "--device",
        "cpu",
        "--models",
        "sam2.1_mini",
        "--frames",
        "3",
        "--size",
        "48,64",
        "--repeats",
        "1",
    ]
    assert video.main([*argv, "--out", str(out)]) == 0
    rows = next(iter(json.loads(out.with_suffix(".json").read_text())["sections"].values()))
    assert [r["config"] for r in rows] == list(video.CONFIGS)
    assert all(r["status"] == "ok" and r["frames/s"] > 0 for r in rows), rows
    assert rows[1]["max diff"] < 2e-5  # our frozen tracker's logits are the official ones
