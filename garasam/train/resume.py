"""Resuming a run: the output folder decides between a fresh run, a resume and a refusal (on rank 0,
broadcast to every rank), and a checkpoint is read back into the model, optimiser and generators."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from garasam.adapters import load_adapters
from garasam.errors import CheckpointError, ConfigError, GarasamError
from garasam.io import atomic_write_text
from garasam.runtime import DistContext
from garasam.train import checkpoint as ckpt
from garasam.train import distributed
from garasam.train.config import TrainConfig, config_diff, dump_yaml
from garasam.version import __version__


@dataclass(frozen=True)
class Resumed:
    """The counters a checkpoint restores."""

    step: int
    best: dict[str, Any] | None
    nonfinite_total: int
    bad_samples: int


def prepare_output(config: TrainConfig, output: Path, ctx: DistContext) -> Path | None:
    """Rank 0 inspects the folder and decides; every rank gets the decision (or the error)."""
    decision: tuple[str | None, str | None] = (None, None)
    failure: GarasamError | None = None
    if ctx.is_main:
        try:
            path = decide_resume(config, output, ctx)
            decision = (str(path) if path else None, None)
        except GarasamError as err:
            failure, decision = err, (None, str(err))
    path, error = distributed.broadcast_object(decision, ctx)
    if failure is not None:
        raise failure
    if error is not None:
        raise ConfigError(error)
    distributed.barrier(ctx)
    return Path(path) if path else None


def decide_resume(config: TrainConfig, output: Path, ctx: DistContext) -> Path | None:
    """Fresh run, resume (the newest intact checkpoint) or refuse, as the folder and the flags say;
    a fresh run records its identity (run.json) and config first."""
    existing = ckpt.read_run(output)
    checkpoints = ckpt.list_checkpoints(output)
    if config.overwrite and (existing or checkpoints):
        ckpt.remove_run(output)
        existing, checkpoints = None, []
    if existing is not None and existing.get("config_hash") != config.config_hash():
        changes = config_diff(existing.get("identity", {}), config.identity())
        raise ConfigError(
            f"{output} holds another run (config hash {existing.get('config_hash')}, this run "
            f"{config.config_hash()}; differences: {'; '.join(changes[:6]) or 'unknown'}); "
            "choose another --out or pass --overwrite to replace it"
        )
    if checkpoints and config.resume is False:
        raise ConfigError(
            f"{output} already holds checkpoints of this run (last at step {checkpoints[-1][0]}); "
            "pass --resume to continue it or --overwrite to start over"
        )
    if not checkpoints and config.resume is True:
        raise ConfigError(
            f"{output}: nothing to resume (no complete checkpoint in {output / ckpt.CHECKPOINTS})"
        )
    if existing is None:
        output.mkdir(parents=True, exist_ok=True)
        ckpt.write_run(
            output,
            {
                "config_hash": config.config_hash(),
                "identity": config.identity(),
                "garasam_version": __version__,
                "torch_version": torch.__version__,
                "world_size": ctx.world_size,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            },
        )
    atomic_write_text(output / "config.yaml", dump_yaml(config))
    if not checkpoints:
        return None
    path, skipped = ckpt.newest_intact(output)
    if path is None:
        raise CheckpointError(f"{output}: no intact checkpoint to resume from:\n  " + "\n  ".join(skipped))
    if skipped:
        warnings.warn(
            f"{output}: resuming from {path.name}, the newest intact checkpoint; passed over "
            + "; ".join(skipped),
            stacklevel=2,
        )
    return path


def restore(
    path: Path,
    config: TrainConfig,
    sam: nn.Module,
    optimizer: torch.optim.Optimizer,
    dataset_size: int,
    ctx: DistContext,
) -> Resumed:
    """Load a checkpoint into the model, the optimiser and the random generators; the counters come back."""
    state = ckpt.load_state(path)
    if state.get("config_hash") != config.config_hash():
        raise CheckpointError(f"{path}: checkpoint of another config (hash {state.get('config_hash')})")
    load_adapters(sam, path / ckpt.ADAPTERS, trainable=True)
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError) as err:
        raise CheckpointError(f"{path}: optimizer state does not fit this model ({err})") from None
    resumed = Resumed(
        int(state["step"]),
        state.get("best"),
        int(state.get("nonfinite_total", 0)),
        int(state.get("bad_samples", 0)),
    )
    rng = state.get("rng") or []
    if state.get("dataset_size") != dataset_size:
        warnings.warn(
            f"{path}: the training set had {state.get('dataset_size')} samples, now {dataset_size}; "
            "the data order after resuming differs from an uninterrupted run",
            stacklevel=2,
        )
    if len(rng) == ctx.world_size:
        ckpt.set_rng_state(rng[ctx.rank])
    else:
        warnings.warn(
            f"{path}: saved by {len(rng)} process(es), resumed by {ctx.world_size}: "
            "random generators are reseeded",
            stacklevel=2,
        )
        torch.manual_seed(config.run.seed * 1000 + ctx.rank + 1 + resumed.step)
    return resumed
