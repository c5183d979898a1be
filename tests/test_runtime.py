"""garasam.runtime: the device, precision, process group and stop signal of every command (issue 28)."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from garasam.errors import ConfigError
from garasam.runtime import (
    StopRequest,
    autocast_for,
    join_process_group,
    leave_process_group,
    pick_device,
    resolve_device,
    uses_bf16,
)

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")


def test_auto_is_decided_once() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == resolve_device(None) == expected
    assert resolve_device("cpu") == "cpu" and pick_device("cpu") == torch.device("cpu")


@NO_CUDA
@pytest.mark.parametrize("name", ["cuda", "cuda:7"])
def test_a_missing_gpu_is_a_clear_error(name: str) -> None:
    with pytest.raises(ConfigError, match=f"device {name}: no CUDA device"):
        pick_device(name)


def test_a_missing_metal_backend_is_a_clear_error() -> None:
    if torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    with pytest.raises(ConfigError, match="device mps: .* not available"):
        pick_device("mps")


def test_the_bf16_rule() -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert not uses_bf16(cpu, "auto") and uses_bf16(gpu, "auto") and uses_bf16(cpu, "bf16")
    assert not uses_bf16(gpu, "fp32")
    with pytest.raises(ConfigError, match="precision must be auto, fp32 or bf16"):
        uses_bf16(cpu, "fp16")
    assert not autocast_for(cpu, "auto")._enabled


def test_a_single_process_needs_no_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ctx = join_process_group("cpu")
    assert (ctx.rank, ctx.world_size, ctx.owns_group, ctx.is_main) == (0, 1, False, True)
    leave_process_group(ctx)


def test_a_signal_asks_the_loop_to_stop() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signal == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before  # the previous handler is back


@NO_CUDA
@pytest.mark.parametrize("device", ["cuda", "cuda:7", "mps"])
@pytest.mark.parametrize("command", ["predict", "serve", "eval"])
def test_every_command_checks_the_device_before_any_work(command, device, tmp_path, capsys) -> None:
    """Issue 29, item 6: eval, predict and serve ended in torch tracebacks; train already refused cleanly."""
    from garasam.cli import main
    from garasam.models.build import TINY_WEIGHTS

    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    sample = next((TINY_WEIGHTS.parent / "samples").iterdir())
    argv = {
        "predict": ["predict", str(sample), "--box", "1,1,20,20", "--out", str(tmp_path / "p")],
        "serve": ["serve", "--port", "7999"],
        "eval": ["eval", "--data", f"robustseg:{tmp_path}", "--out", str(tmp_path / "e")],
    }[command]
    assert main([*argv, "--device", device]) == 2
    err = capsys.readouterr().err
    assert f"garasam {command}: error: device {device}:" in err and "Traceback" not in err
