"""benchmarks/encoder.py runs start to finish on a CPU with the tiny model, and never dies half-way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmarks import encoder
from benchmarks.common import count_flops

SMOKE = ["--device", "cpu", "--models", "tiny", "--batch", "1", "--repeats", "1", "--warmup", "1"]
SMOKE += ["--dtype", "float32", "--max-seconds", "2"]


def _rows(json_path: Path, section: str) -> list[dict]:
    sections = json.loads(json_path.read_text())["sections"]
    return next(rows for title, rows in sections.items() if title.startswith(section))


@pytest.mark.slow  # about 8 s of CPU
def test_smoke_run_writes_every_table(tmp_path: Path) -> None:
    out = tmp_path / "encoder.md"
    configs = "official_fp32,frozen,gara"
    assert encoder.main([*SMOKE, "--configs", configs, "--attention-bench", "--out", str(out)]) == 0
    rows = _rows(out.with_suffix(".json"), "Image encoder")
    assert [r["config"] for r in rows] == ["official_fp32", "frozen", "gara"]
    assert all(r["status"].startswith("ok") and r["ms/img"] > 0 for r in rows)
    ours = [r for r in rows if r["config"] in ("frozen", "gara")]
    assert all(r["rel err"] < 1e-4 for r in ours), "float32 fast path must match its reference"
    assert "high-space fraction" in rows[-1]["status"]
    e2e = _rows(out.with_suffix(".json"), "Prompted prediction")
    assert {(r["config"], r["boxes"]) for r in e2e} >= {("official_fp32", 64), ("frozen", 1), ("frozen", 64)}
    attention = _rows(out.with_suffix(".json"), "Attention kernels")
    assert {r["variant"] for r in attention} >= {"bias (transformers' way)", "fold"}
    assert all(r["status"] == "ok" for r in e2e + attention)
    summary = _rows(out.with_suffix(".json"), "Summary")
    assert summary[0]["b/a"] > 0 and summary[0]["c/b"] > 0
    text = out.read_text()
    assert "| tiny | frozen | 1 |" in text and "## Summary" in text


@pytest.mark.slow  # about 20 s of CPU: the rank kernel runs in Triton's interpreter here
@pytest.mark.usefixtures("large_tiles")
def test_graph_and_kernel_variants_run_and_match_the_reference(tmp_path: Path) -> None:
    """On a CPU the graph rows run eagerly (only CUDA inputs are captured) and the kernel rows run in
    Triton's interpreter (in large tiles, for time): this checks the rows and their errors, not speed."""
    pytest.importorskip("triton")
    out = tmp_path / "encoder.md"
    configs = "frozen,frozen_graphs,gara,gara_kernel,gara_graphs,gara_kernel_graphs"
    assert encoder.main([*SMOKE, "--configs", configs, "--no-e2e", "--out", str(out)]) == 0
    rows = _rows(out.with_suffix(".json"), "Image encoder")
    assert [r["config"] for r in rows] == configs.split(",")
    assert all(r["status"].startswith("ok") and r["rel err"] < 1e-4 for r in rows)
    paths = {r["path"] for r in _rows(out.with_suffix(".json"), "Summary")}
    assert paths == {"eager", "rank kernel", "CUDA graphs", "kernel + graphs"}


def test_kernel_rows_are_skipped_where_triton_cannot_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    out = tmp_path / "encoder.md"
    assert encoder.main([*SMOKE, "--configs", "gara,gara_kernel", "--no-e2e", "--out", str(out)]) == 0
    rows = _rows(out.with_suffix(".json"), "Image encoder")
    assert [r["config"] for r in rows] == ["gara", "gara_kernel"]
    assert rows[0]["status"].startswith("ok")
    assert rows[1]["status"] == encoder.NO_KERNEL


def test_a_failing_configuration_is_reported_and_the_run_goes_on(tmp_path: Path, monkeypatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(encoder, "build_official_sam", broken)
    out = tmp_path / "encoder.md"
    assert encoder.main([*SMOKE, "--configs", "official_fp32,frozen", "--no-e2e", "--out", str(out)]) == 0
    rows = _rows(out.with_suffix(".json"), "Image encoder")
    assert rows[0]["config"] == "official (build)" and rows[0]["status"] == "failed: out of memory"
    assert rows[1]["config"] == "frozen" and rows[1]["status"] == "ok"


def test_a_spent_budget_skips_and_still_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "encoder.md"
    assert encoder.main([*SMOKE, "--configs", "frozen", "--time-budget", "0", "--out", str(out)]) == 0
    rows = _rows(out.with_suffix(".json"), "Image encoder")
    assert rows and all(r["status"].startswith("skipped") for r in rows)


def test_nominal_flops_are_what_the_official_encoder_computes() -> None:
    sam = encoder.build_official_sam("tiny", torch.device("cpu"))
    pixels = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        counted = count_flops(lambda: sam.image_encoder(pixels))
    assert encoder.encoder_flops("tiny") == counted


@pytest.mark.parametrize(("model_type", "tflops"), [("vit_b", 0.97), ("vit_l", 2.99), ("vit_h", 5.96)])
def test_nominal_flops_of_the_real_encoders(model_type: str, tflops: float) -> None:
    # The reference's section 7 (counted on the official code at 1024x1024, padded windows).
    assert encoder.encoder_flops(model_type) / 1e12 == pytest.approx(tflops, abs=0.005)
