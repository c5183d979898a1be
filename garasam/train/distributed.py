"""The few collectives training needs, and DDP; each a no-op in a single process.

The same `garasam train` command runs alone or under `torchrun` (one or many nodes); joining the
process group is `garasam.runtime.join_process_group`'s job.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from garasam.runtime import DistContext


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
