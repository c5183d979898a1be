"""`garasam pretrain-tiny`: train the bundled tiny SAM from scratch on synthetic scenes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from garasam.argtypes import (
    int_at_least,
    non_negative_int,
    output_file,
    positive_float,
    positive_int,
    seed,
    training_device,
    worker_count,
)
from garasam.outputs import claim_output
from garasam.train.pretrain_tiny import (
    PretrainConfig,
    pretrain_tiny,
)

# Bounds a mistyped count cannot pass: a step of 512 scenes of 256 px already holds 0.4 GB of float
# pixels before any activation; the held-out check scores one scene at a time (with a progress bar).
MAX_BATCH, MAX_EVAL_SCENES = 512, 10_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = PretrainConfig()
    parser.add_argument(
        "--out",
        type=output_file,
        default=defaults.out,
        help="safetensors file to write (the bundled weights are replaced only when named here)",
    )
    parser.add_argument(
        "--max-steps", type=positive_int, default=defaults.steps, help="training steps at most"
    )
    parser.add_argument(
        "--steps", dest="max_steps", type=positive_int, help=argparse.SUPPRESS
    )  # the former name
    parser.add_argument(
        "--time-budget", type=positive_float, default=None, help="stop after this many seconds"
    )
    parser.add_argument(
        "--batch-size",
        type=int_at_least(1, MAX_BATCH),
        default=defaults.batch_size,
        help=f"scenes per step, at most {MAX_BATCH}",
    )
    parser.add_argument("--lr", type=positive_float, default=defaults.lr, help="peak learning rate (AdamW)")
    parser.add_argument("--device", default="auto", type=training_device, help="auto, cpu or cuda")
    parser.add_argument(
        "--workers", type=worker_count, default=defaults.workers, help="scene-generating processes"
    )
    parser.add_argument("--seed", type=seed, default=defaults.seed, help="seed of weights and scenes")
    parser.add_argument(
        "--eval-scenes",
        type=int_at_least(1, MAX_EVAL_SCENES),
        default=defaults.eval_scenes,
        help=f"held-out scenes of the quick check, at most {MAX_EVAL_SCENES}",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="continue from these tiny SAM weights (default: from scratch)",
    )
    parser.add_argument("--init", dest="checkpoint", type=Path, help=argparse.SUPPRESS)  # the former name
    parser.add_argument(
        "--warmup-steps", type=non_negative_int, default=defaults.warmup_steps, help="linear warm-up steps"
    )


def run(args: argparse.Namespace) -> int:
    out = Path(args.out).absolute()
    # the weights file's folder may hold other runs' files: the lock is this file's own
    with claim_output(out.parent, "pretrain-tiny", lock_name=f".{out.name}.lock"):
        card = pretrain_tiny(
            PretrainConfig(
                out=args.out,
                steps=args.max_steps,
                time_budget=args.time_budget,
                batch_size=args.batch_size,
                lr=args.lr,
                device=args.device,
                workers=args.workers,
                seed=args.seed,
                eval_scenes=args.eval_scenes,
                init=args.checkpoint,
                warmup_steps=args.warmup_steps,
            )
        )
    print(
        json.dumps(
            {k: card[k] for k in ("clear_iou_held_out_source", "training", "hardware")}, indent=2, default=str
        )
    )
    return 0
