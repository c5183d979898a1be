"""Training checkpoints: adapters (safetensors) + trainer state, written atomically, pruned, resumed.

Layout of an output folder:

    run.json                     identity of the run (config hash, config, versions)
    config.yaml                  the resolved config
    checkpoints/step_00001000/   adapters/ (save_adapters layout) + trainer_state.pt
    checkpoints/best.json        step and validation IoU of the best checkpoint (never pruned)
    adapters/                    the final adapters (load with garasam.load_adapters)
    best/                        the adapters of the best validated step (runs with validation)
    log.jsonl, tb/               metrics

A checkpoint folder is assembled under a temporary name and renamed into place, so a kill at any
moment leaves only complete checkpoints. The trainer state holds only tensors and plain Python types
and is read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from garasam.adapters import save_adapters
from garasam.errors import CheckpointError
from garasam.io import atomic_path, atomic_write_text

CHECKPOINTS = "checkpoints"
ADAPTERS = "adapters"
STATE_NAME = "trainer_state.pt"
RUN_NAME = "run.json"
BEST_NAME = "best.json"
BEST_DIR = "best"  # the best validated adapters, beside the final adapters/
_STEP_DIR = re.compile(r"^step_(\d{8,})$")
# What a fresh run of this folder removes with --overwrite (never anything else).
RUN_ARTEFACTS = (CHECKPOINTS, ADAPTERS, RUN_NAME, "config.yaml", "log.jsonl", "tb")


def checkpoint_dir(output: Path, step: int) -> Path:
    return output / CHECKPOINTS / f"step_{step:08d}"


def list_checkpoints(output: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints of `output`, oldest first (temporary and partial folders are ignored)."""
    folder = output / CHECKPOINTS
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        match = _STEP_DIR.match(path.name)
        if match and (path / STATE_NAME).is_file() and (path / ADAPTERS).is_dir():
            found.append((int(match[1]), path))
    return sorted(found)


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder next to `target`; on success it replaces `target` in one rename.

    An existing `target` is first moved aside and deleted afterwards, so at every moment either the
    old or the new folder is complete under its name (or, for an instant, the old one aside).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.old"
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def save_checkpoint(output: Path, step: int, model: nn.Module, state: dict[str, Any]) -> Path:
    """Write the adapters and the trainer `state` as checkpoint `step` (complete or not at all)."""
    target = checkpoint_dir(output, step)
    with atomic_dir(target) as tmp:
        save_adapters(model, tmp / ADAPTERS, extra={"training_step": step})
        with atomic_path(tmp / STATE_NAME) as path:
            torch.save(state, path)
    return target


def prune(output: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` checkpoints; the best one is always kept."""
    best = read_best(output)
    keep = {best["step"]} if best else set()
    checkpoints = list_checkpoints(output)
    keep |= {step for step, _ in checkpoints[-keep_last:]}
    for step, path in checkpoints:
        if step not in keep:
            shutil.rmtree(path, ignore_errors=True)


def load_state(path: Path) -> dict[str, Any]:
    """The trainer state of checkpoint folder `path` (weights_only: no code runs from the file)."""
    file = path / STATE_NAME
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{file}: checkpoint state missing") from None
    except Exception as err:  # torch raises many types for corrupt or foreign files
        raise CheckpointError(f"{file}: unreadable training checkpoint ({err})") from None
    if not isinstance(state, dict) or "step" not in state or "optimizer" not in state:
        raise CheckpointError(f"{file}: not a garasam training checkpoint")
    return state


def newest_intact(output: Path) -> tuple[Path | None, list[str]]:
    """The newest checkpoint whose trainer state and adapters both read, and why newer ones were
    passed over (a crash mid-copy, a full disk or a bit flip leaves a complete-looking folder)."""
    from garasam.adapters.io import read_adapter_config, read_adapter_weights

    skipped = []
    for step, path in reversed(list_checkpoints(output)):
        try:
            load_state(path)
            read_adapter_weights(path / ADAPTERS, read_adapter_config(path / ADAPTERS))
        except (CheckpointError, OSError) as err:
            skipped.append(f"step {step}: {err}")
            continue
        return path, skipped
    return None, skipped


def write_best(output: Path, step: int, score: float) -> None:
    atomic_write_text(output / CHECKPOINTS / BEST_NAME, json.dumps({"step": step, "val_iou": score}) + "\n")


def read_best(output: Path) -> dict[str, Any] | None:
    path = output / CHECKPOINTS / BEST_NAME
    if not path.is_file():
        return None
    try:
        best = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable ({err})") from None
    return best if isinstance(best, dict) and "step" in best else None


def export_adapters(output: Path, model: nn.Module, extra: dict[str, Any]) -> Path:
    """Write the final adapters to `output/adapters` (replacing an older export atomically)."""
    target = output / ADAPTERS
    with atomic_dir(target) as tmp:
        save_adapters(model, tmp, extra=extra)
    return target


def export_best(output: Path) -> Path | None:
    """Copy the adapters of the best validated checkpoint to `output/best` (None without validation).

    A new best always gets a checkpoint of its own, which pruning keeps, so its adapters are on disk."""
    best = read_best(output)
    source = next((path for step, path in list_checkpoints(output) if best and step == best["step"]), None)
    if source is None:
        return None
    target = output / BEST_DIR
    with atomic_dir(target) as tmp:
        for item in (source / ADAPTERS).iterdir():
            shutil.copy2(item, tmp / item.name)
    return target


def read_run(output: Path) -> dict[str, Any] | None:
    path = output / RUN_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable run description ({err})") from None


def write_run(output: Path, info: dict[str, Any]) -> None:
    atomic_write_text(output / RUN_NAME, json.dumps(info, indent=2) + "\n")


def remove_run(output: Path) -> None:
    """Delete a previous run's artefacts from `output` (only the files a run writes)."""
    for name in RUN_ARTEFACTS:
        path = output / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch and CUDA generator states as tensors and plain types (weights_only-safe)."""
    np_state = np.random.get_state(legacy=False)
    return {
        "python": _plain(random.getstate()),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured (CUDA states only where the same devices exist)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": np_state["bit_generator"],
            "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
