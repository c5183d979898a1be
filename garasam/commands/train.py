"""`garasam train`: train adapters on a frozen SAM from a YAML recipe, alone or under torchrun.

    garasam train --config configs/tiny_gara.yaml --data robustseg:data/synth --out runs/tiny
    torchrun --nproc_per_node=8 -m garasam.cli train --config configs/gara_vit_b.yaml ... run.num_workers=8

Trailing `key=value` arguments override the recipe (dotted keys: `optim.lr=1e-3`).
"""

from __future__ import annotations

import argparse
import os
import signal
from typing import Any

from garasam.argtypes import positive_int, training_device
from garasam.models.registry import MODEL_TYPES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="YAML recipe (configs/*.yaml); default: the built-in ViT-B GaRA recipe"
    )
    parser.add_argument(
        "--data",
        action="append",
        metavar="READER:PATH",
        help="training data, e.g. robustseg:/data/robustseg/train (repeat to concatenate datasets)",
    )
    parser.add_argument("--val-data", metavar="READER:PATH", help="held-out validation data")
    parser.add_argument(
        "--out", dest="output_dir", help="run folder: checkpoints, logs and the final adapters/"
    )
    parser.add_argument("--output-dir", dest="output_dir", help=argparse.SUPPRESS)  # the former name
    parser.add_argument(
        "--model-type",
        choices=sorted(MODEL_TYPES),
        help="SAM backbone (model.model_type; default: the recipe's)",
    )
    parser.add_argument("--checkpoint", help="SAM weights (model.checkpoint; default: the recipe's)")
    parser.add_argument(
        "--init-adapters",
        metavar="DIR",
        help="start from these trained adapters (model.init_adapters; their config must be the run's)",
    )
    parser.add_argument(
        "--max-steps", type=positive_int, help="stop after this many steps (the lr decay scales along)"
    )
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    parser.add_argument("--overwrite", action="store_true", help="replace another run's checkpoints in --out")
    parser.add_argument(
        "--device", type=training_device, help="auto, cpu or cuda (run.device; default: the recipe's, auto)"
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.lr=1e-4"
    )


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The flags given, as config keys and their typed values (the key=value overrides come after)."""
    return {
        key: getattr(args, name)
        for name, key in _FLAG_KEYS
        if getattr(args, name) not in (None, "", [], False)
    }


def run(args: argparse.Namespace) -> int:
    from garasam.train import load_config, train

    if _is_video_recipe(args.config, args.overrides):
        return _run_video(args)
    config = load_config(args.config, args.overrides, settings_from_args(args))
    result = train(config)
    if int(os.environ.get("RANK", "0")) == 0:
        if result.status == "completed":
            best = (
                f", best validation IoU {result.best['val_iou']:.4f} at step {result.best['step']} "
                f"(its adapters in {result.best_adapters_dir})"
                if result.best
                else ""
            )
            print(
                f"train: {result.steps} steps in {result.seconds:.0f} s ({result.images_per_second:.1f} images/s), "
                f"last loss {result.last_loss if result.last_loss is not None else float('nan'):.4f}{best}; "
                f"adapters in {result.adapters_dir}"
            )
        else:
            print(f"train: interrupted at step {result.steps}; continue with --resume")
    if result.status == "completed":
        return 0
    return 128 + int(result.signal or signal.SIGINT)  # the shell convention: 130 for SIGINT, 143 for SIGTERM


# flag (argparse dest) -> the config key it sets
_FLAG_KEYS: tuple[tuple[str, str], ...] = (
    ("data", "data.train"),
    ("val_data", "validation.data"),
    ("output_dir", "output_dir"),
    ("model_type", "model.model_type"),
    ("checkpoint", "model.checkpoint"),
    ("init_adapters", "model.init_adapters"),
    ("max_steps", "run.max_steps"),
    ("resume", "resume"),
    ("overwrite", "overwrite"),
    ("device", "run.device"),
)


def _is_video_recipe(path: str | None, overrides: list[str]) -> bool:
    """A recipe saying `task: video` (or a `task=video` override) trains on clips."""
    if any(item.replace(" ", "") == "task=video" for item in overrides):
        return True
    if path is None:
        return False
    from pathlib import Path

    from garasam.train.config import read_recipe

    return read_recipe(Path(path)).get("task") == "video"


def _run_video(args: argparse.Namespace) -> int:
    from garasam.train import load_config
    from garasam.video.train_config import VideoTrainConfig
    from garasam.video.training import train_video

    config = load_config(args.config, args.overrides, settings_from_args(args), config_class=VideoTrainConfig)
    result = train_video(config)
    if int(os.environ.get("RANK", "0")) == 0:
        if result.status == "completed":
            last = result.last_loss if result.last_loss is not None else float("nan")
            print(
                f"train (video): {result.steps} steps in {result.seconds:.0f} s, last loss {last:.4f}; adapters in {result.adapters_dir}"
            )
        else:
            print(f"train (video): interrupted at step {result.steps}; continue with --resume")
    return 0 if result.status == "completed" else 128 + int(result.signal or signal.SIGINT)
