"""Smoke run of benchmarks/export.py on the tiny model: every runtime and precision gets a row."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("onnxruntime")

from benchmarks import export  # noqa: E402


def test_every_runtime_and_precision_is_timed(tmp_path) -> None:
    assert export.main(["--models", "tiny", "--repeats", "1", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "export.json").read_text())["sections"]["latency"]
    runtimes = {(row["part"], row["runtime"]) for row in rows}
    expected = {"PyTorch eager fp32"} | {f"ONNX Runtime {p}" for p in export.PRECISIONS}
    assert runtimes == {(part, r) for part in ("encoder", "decoder") for r in expected}
    assert all(row["median ms"] > 0 for row in rows)
