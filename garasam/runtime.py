"""Where and how a command runs, decided once for every command: the device ("auto" and its
checks), the bf16 rule, the process group under `torchrun`, and a stop on SIGINT / SIGTERM.

Commands differ only in what they ask for (training refuses `cuda:N`, say); the answers come
from here, so `garasam eval --device cuda` on a machine without a GPU fails as `train` does.
"""

from __future__ import annotations

import datetime
import os
import signal
import threading
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.distributed as dist

from garasam.errors import ConfigError

Precision = Literal["auto", "fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16")


def resolve_device(value: str | None) -> str:
    """`auto` (or nothing) -> cuda when available, else cpu; any other name as given."""
    if value in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(value)


def pick_device(preference: str | None, local_rank: int = 0) -> torch.device:
    """The device a process runs on, refused with a ConfigError when this machine lacks it (not a
    torch traceback later). Plain `cuda` takes the GPU of this process's local rank."""
    name = resolve_device(preference)
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name}: no CUDA device is available here; use cpu (or auto)")
        count = torch.cuda.device_count()
        if name == "cuda":
            return torch.device("cuda", local_rank % count)
        index = int(name.split(":", 1)[1])
        if index >= count:
            raise ConfigError(
                f"device {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
            )
        return torch.device("cuda", index)
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("device mps: Apple's Metal backend is not available here; use cpu (or auto)")
        return torch.device("mps")
    if name != "cpu":
        raise ConfigError(f"device {name!r}: expected auto, cpu, cuda, cuda:N or mps")
    return torch.device("cpu")


def uses_bf16(device: torch.device, precision: str) -> bool:
    """bf16 on CUDA (or when asked for), plain fp32 otherwise."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def autocast_for(device: torch.device, precision: str) -> torch.autocast:
    """The forward's autocast context (see `uses_bf16`); disabled when it is fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(device, precision))


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the run and which device it runs on."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    owns_group: bool  # True when join_process_group created the group (and leave_process_group ends it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def join_process_group(device_preference: str | None = "auto") -> DistContext:
    """Join torchrun's process group when launched by it (WORLD_SIZE > 1), else a single process:
    NCCL with one GPU per local rank on CUDA, gloo on the CPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world_size > 1 and resolve_device(device_preference).startswith("cuda"):
        device_preference = "cuda"  # under torchrun each process takes its local rank's GPU
    device = pick_device(device_preference, local_rank)
    if world_size == 1 and not dist.is_initialized():
        return DistContext(0, 0, 1, device, owns_group=False)
    owns = not dist.is_initialized()
    if owns:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            timeout=datetime.timedelta(minutes=int(os.environ.get("GARASAM_DIST_TIMEOUT_MIN", "30"))),
        )
    return DistContext(dist.get_rank(), local_rank, dist.get_world_size(), device, owns_group=owns)


def leave_process_group(ctx: DistContext) -> None:
    """End the process group if `join_process_group` created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


class StopRequest:
    """SIGINT / SIGTERM set a flag, so that a long loop finishes its step, saves and exits.

    A second signal gets the previous handler (Ctrl-C twice interrupts at once). Outside the main
    thread (a web worker, a test runner's thread) no handler can be installed and none is.
    """

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signal = signum
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
