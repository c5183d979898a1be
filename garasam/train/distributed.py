"""Process-group setup and the few collectives training needs; a no-op in a single process.

The same `garasam train` command runs alone or under `torchrun` (one or many nodes): torchrun's
RANK / WORLD_SIZE / LOCAL_RANK environment selects DDP, NCCL on CUDA and gloo on CPU.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from garasam.errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the run and which device it trains on."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    owns_group: bool  # True when setup() created the process group (and teardown() destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    """`auto` = CUDA when available; `cuda` without a GPU is a ConfigError, not a crash later."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("run.device=cuda but no CUDA device is available; use run.device=cpu")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def setup(device_preference: str = "auto") -> DistContext:
    """Join torchrun's process group when launched by it (WORLD_SIZE > 1), else a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
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


def teardown(ctx: DistContext) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum over processes, in place (metrics travel as sums and counts, never as means)."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's `obj` on every rank (decisions taken once: resume or not, errors)."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's `obj`, in rank order (per-rank RNG states for a checkpoint)."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def wrap(module: nn.Module, ctx: DistContext) -> nn.Module:
    """DDP around `module` (adapters already injected and SAM frozen, so only they are synchronised).

    `find_unused_parameters` stays off: in training every adapter evaluates all of its components
    under a 0/1 mask, so even a component or space that a hard gate switched off is in the graph
    and receives a (zero) gradient. tests/train/test_loop.py checks that every trainable parameter
    gets a gradient for each adapter type.
    """
    if not ctx.distributed:
        return module
    return nn.parallel.DistributedDataParallel(module, device_ids=None, find_unused_parameters=False)
