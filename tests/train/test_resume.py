"""Checkpoints and resuming: a stopped run continues to exactly the weights of an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from garasam.errors import CheckpointError, ConfigError
from garasam.train import train
from garasam.train.checkpoint import list_checkpoints, load_state, rng_state, set_rng_state
from garasam.train.monitor import read_log

from .conftest import CONFIGS, fast_overrides


def _adapters(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "adapters" / "adapter_model.safetensors"))


def _assert_bitwise_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def test_resuming_a_shorter_run_matches_an_uninterrupted_one(make_config, tmp_path: Path) -> None:
    # 6 scenes at batch 2: 3 steps per epoch, so the run crosses an epoch boundary after resuming
    # mid-epoch. Without decay the schedule does not depend on max_steps.
    common = ("schedule.decay_epochs=[]", "checkpoint.every_steps=100")
    full = train(make_config("run.max_steps=5", *common, output=tmp_path / "full"))
    first = train(make_config("run.max_steps=2", *common, output=tmp_path / "split"))
    assert first.steps == 2 and [s for s, _ in list_checkpoints(tmp_path / "split")] == [2]
    second = train(make_config("run.max_steps=5", "resume=true", *common, output=tmp_path / "split"))
    assert (full.steps, second.steps) == (5, 5)
    _assert_bitwise_equal(_adapters(tmp_path / "full"), _adapters(tmp_path / "split"))
    state_full = load_state(list_checkpoints(tmp_path / "full")[-1][1])
    state_split = load_state(list_checkpoints(tmp_path / "split")[-1][1])
    for key, moments in state_full["optimizer"]["state"].items():
        for name, value in moments.items():
            assert torch.equal(value, state_split["optimizer"]["state"][key][name]), (key, name)
    starts = [r for r in read_log(tmp_path / "split" / "log.jsonl") if r["event"] == "start"]
    assert [s["step"] for s in starts] == [0, 2]


def test_rng_states_survive_a_weights_only_round_trip(tmp_path: Path) -> None:
    import random

    import numpy as np

    state = rng_state()
    expected = (random.random(), float(np.random.rand()), torch.rand(3))
    path = tmp_path / "rng.pt"
    torch.save(state, path)
    set_rng_state(torch.load(path, weights_only=True))
    again = (random.random(), float(np.random.rand()), torch.rand(3))
    assert expected[:2] == again[:2] and torch.equal(expected[2], again[2])


def test_a_corrupt_checkpoint_is_a_checkpoint_error(make_config, tmp_path: Path) -> None:
    train(make_config("run.max_steps=1"))
    folder = list_checkpoints(tmp_path / "run")[-1][1]
    (folder / "trainer_state.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="trainer_state.pt: unreadable training checkpoint"):
        train(make_config("run.max_steps=2", "resume=true"))


def _train_command(output: Path, scenes: str, checkpoint: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "garasam.cli",
        "train",
        "--config",
        str(CONFIGS / "tiny_gara.yaml"),
        *fast_overrides(output, scenes, checkpoint),
        "run.max_steps=10",
        "checkpoint.every_steps=100",
        *extra,
    ]


@pytest.mark.slow
def test_sigterm_checkpoints_and_the_resumed_run_matches(
    scenes: str, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    reference = tmp_path / "reference"
    subprocess.run(
        _train_command(reference, scenes, tiny_checkpoint), env=env, check=True, capture_output=True
    )

    stopped = tmp_path / "stopped"
    process = subprocess.Popen(
        _train_command(stopped, scenes, tiny_checkpoint),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    log = stopped / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if log.is_file() and any(r["event"] == "train" and r["step"] >= 3 for r in read_log(log)):
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err.decode()
    assert "SIGTERM received: checkpoint written" in out.decode()
    (step, _), *_ = list_checkpoints(stopped)[::-1]
    assert 3 <= step < 10

    subprocess.run(
        _train_command(stopped, scenes, tiny_checkpoint, "--resume"), env=env, check=True, capture_output=True
    )
    _assert_bitwise_equal(_adapters(reference), _adapters(stopped))


def test_resume_falls_back_to_the_newest_intact_checkpoint(make_config, tmp_path: Path) -> None:
    """Issue 13, case 14: a truncated newest trainer_state.pt used to stop the resume."""
    every = ("checkpoint.every_steps=1", "checkpoint.keep_last=3")
    train(make_config("run.max_steps=2", *every))
    (_, first), (_, newest) = list_checkpoints(tmp_path / "run")
    state = newest / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    with pytest.warns(UserWarning, match=rf"resuming from {first.name}, the newest intact .* step 2: "):
        train(make_config("run.max_steps=3", "resume=true", *every))
    assert [step for step, _ in list_checkpoints(tmp_path / "run")][-1] == 3
    reference = tmp_path / "reference"
    train(make_config("run.max_steps=3", *every, output=reference))
    _assert_bitwise_equal(
        _adapters(list_checkpoints(tmp_path / "run")[-1][1]), _adapters(list_checkpoints(reference)[-1][1])
    )


def test_a_damaged_adapter_file_is_passed_over_too(make_config, tmp_path: Path) -> None:
    every = ("checkpoint.every_steps=1", "checkpoint.keep_last=3")
    train(make_config("run.max_steps=2", *every))
    newest = list_checkpoints(tmp_path / "run")[-1][1] / "adapters" / "adapter_model.safetensors"
    data = bytearray(newest.read_bytes())
    data[-5] ^= 0x01  # one flipped bit in the tensor data: only the recorded digest can tell
    newest.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="differ from the digest"):
        train(make_config("run.max_steps=3", "resume=true", *every))


def test_a_run_refused_before_its_first_step_does_not_block_its_fix(make_config, tmp_path: Path) -> None:
    """Issue 29, item 11: a run that failed its first check (too few samples for the batch) had
    written run.json already, and the corrected command was refused as 'holds another run'."""
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="do not fill one batch"):
        train(make_config("run.batch_size=100", "run.max_steps=1", output=out))
    assert not (out / "run.json").exists()
    result = train(make_config("run.max_steps=1", output=out))
    assert result.status == "completed"


def test_a_full_disk_at_a_checkpoint_is_named_and_resume_finishes(
    make_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 29, item 5: torch.save on a full disk said only `RuntimeError ... unexpected pos`."""
    import shutil

    from garasam.errors import WriteError
    from garasam.train import checkpoint

    every = ("checkpoint.every_steps=1", "checkpoint.keep_last=3")
    disk = {"full": False}
    usage, real_usage, real_save = shutil.disk_usage("/"), shutil.disk_usage, torch.save

    def save(obj, path) -> None:
        if len(list_checkpoints(tmp_path / "run")) == 1:  # the second checkpoint
            disk["full"] = True
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
        real_save(obj, path)

    monkeypatch.setattr(checkpoint.torch, "save", save)
    monkeypatch.setattr(
        shutil, "disk_usage", lambda p: usage._replace(free=0) if disk["full"] else real_usage(p)
    )
    with pytest.raises(
        WriteError, match=r"cannot write .*step_0*2.*trainer_state\.pt: No space left on device"
    ):
        train(make_config("run.max_steps=3", *every))
    monkeypatch.undo()
    assert [step for step, _ in list_checkpoints(tmp_path / "run")] == [1]  # the last one intact
    result = train(make_config("run.max_steps=3", "resume=true", *every))
    assert result.status == "completed" and result.steps == 3


def test_two_runs_in_two_processes_write_the_same_adapter_files(scenes, tmp_path: Path) -> None:
    """Issue 29, reproducibility: the demo's runs (run.deterministic off, as the demo trains) gave
    equal tensors but different files; now the files are equal byte for byte."""
    config = str(CONFIGS / "tiny_gara.yaml")
    digests = []
    for name in ("a", "b"):
        out = tmp_path / name
        args = ["train", "--config", config, "--data", scenes, "--out", str(out), "--max-steps", "2"]
        args += ["--device", "cpu", "run.batch_size=2", "validation.fraction=0", "logging.progress=false"]
        subprocess.run([sys.executable, "-m", "garasam.cli", *args], check=True, capture_output=True)
        digests += [path.read_bytes() for path in sorted(out.rglob("adapter_model.safetensors"))]
    assert len(digests) == 4 and len(set(digests)) == 1  # the final adapters and step 2's, twice
