"""DDP: two CPU processes (gloo, launched by torchrun) train like one process with the same global batch."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from garasam.train import train
from garasam.train.monitor import read_log
from tests.launch import torchrun_garasam

from .conftest import CONFIGS, fast_overrides


def _torchrun(
    recipe: str, output: Path, scenes: str, checkpoint: Path, *extra: str
) -> subprocess.CompletedProcess:
    return torchrun_garasam(
        "train", "--config", str(CONFIGS / recipe), *fast_overrides(output, scenes, checkpoint), *extra
    )


def _losses(output: Path) -> list[float]:
    return [r["loss"] for r in read_log(output / "log.jsonl") if r["event"] == "train"]


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(
    make_config, scenes: str, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    # LoRA: no Gumbel noise, whose draws depend on how images are split over processes.
    extra = ("run.batch_size=4", "run.max_steps=3", "run.deterministic=false")
    _torchrun("tiny_lora_r16.yaml", tmp_path / "ddp", scenes, tiny_checkpoint, *extra)
    train(make_config(*extra, recipe="tiny_lora_r16.yaml", output=tmp_path / "single"))

    assert _losses(tmp_path / "ddp") == pytest.approx(_losses(tmp_path / "single"), rel=1e-4)
    ddp = load_file(str(tmp_path / "ddp" / "adapters" / "adapter_model.safetensors"))
    single = load_file(str(tmp_path / "single" / "adapters" / "adapter_model.safetensors"))
    assert ddp.keys() == single.keys()
    for key in ddp:
        torch.testing.assert_close(ddp[key], single[key], atol=2e-5, rtol=1e-4)
    start = next(r for r in read_log(tmp_path / "ddp" / "log.jsonl") if r["event"] == "start")
    assert start["world_size"] == 2
    assert not list((tmp_path / "ddp").glob("**/*.tmp")), "only rank 0 writes, atomically"


@pytest.mark.slow
def test_gara_trains_and_validates_under_ddp(scenes: str, tiny_checkpoint: Path, tmp_path: Path) -> None:
    _torchrun(
        "tiny_gara.yaml",
        tmp_path / "ddp",
        scenes,
        tiny_checkpoint,
        "run.max_steps=2",
        "validation.fraction=0.34",
        "validation.degradations=[clean, fog]",
    )
    records = read_log(tmp_path / "ddp" / "log.jsonl")
    assert [r["step"] for r in records if r["event"] == "train"] == [1, 2]
    val = [r for r in records if r["event"] == "val"]
    assert val and set(val[-1]["iou"]) == {"clean", "fog", "mean", "degraded"}
    assert (tmp_path / "ddp" / "adapters" / "adapter_model.safetensors").is_file()
