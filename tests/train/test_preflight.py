"""Before training builds anything: a model and batch that cannot fit are refused with what to change,
and loader workers are capped at the CPUs (issue 13, case 3)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from garasam.errors import ConfigError
from garasam.train import preflight, train
from garasam.train.preflight import needed_gib, plan_resources

CPU = torch.device("cpu")


def test_vit_b_at_batch_8_on_a_24_gib_cpu_is_refused_with_hints() -> None:
    with pytest.raises(ConfigError) as caught:
        plan_resources("vit_b", 8, 4, bf16=False, checkpointing=False, device=CPU, available=24.0)
    message = str(caught.value)
    assert "model vit_b at batch 8 per process needs about 41.5 GiB" in message
    assert "only 24.0 GiB are available" in message
    for hint in ("run.batch_size=4", "run.activation_checkpointing=true", "--device cuda", "model_type=tiny"):
        assert hint in message


def test_what_fits_is_planned_and_described() -> None:
    plan = plan_resources("tiny", 4, 64, bf16=False, checkpointing=False, device=CPU, available=24.0)
    cpus = len(os.sched_getaffinity(0))
    assert plan.workers == min(64, cpus) and plan.needed_gib == pytest.approx(0.6)
    assert plan.describe() == f"{plan.workers} loader worker(s), ~0.6 GiB estimated of 24.0 GiB available"


def test_checkpointing_and_bf16_lower_the_estimate() -> None:
    full = needed_gib("vit_h", 8, bf16=False, checkpointing=False)
    assert needed_gib("vit_h", 8, bf16=True, checkpointing=False) < full
    assert needed_gib("vit_h", 8, bf16=False, checkpointing=True) < full


def test_train_refuses_before_writing_anything(make_config, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(preflight, "available_gib", lambda device: 0.1)
    config = make_config("run.batch_size=64")
    with pytest.raises(ConfigError, match="model tiny at batch 64 per process needs about"):
        train(config)
    assert not Path(config.output_dir).exists()


def test_the_start_line_says_what_was_chosen(make_config, tmp_path: Path, capsys) -> None:
    train(make_config("run.max_steps=1"))
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("garasam train:"))
    assert "model tiny (" in line and "gara adapters" in line and "loader worker(s)" in line
