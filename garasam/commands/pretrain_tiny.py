"""`garasam pretrain-tiny`: train the bundled tiny SAM from scratch on synthetic scenes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from garasam.argtypes import non_negative_int, output_file, positive_float, positive_int, training_device
from garasam.outputs import claim_output
from garasam.train.pretrain_tiny import (
    PretrainConfig,
    pretrain_tiny,
)


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
        "--batch-size", type=positive_int, default=defaults.batch_size, help="scenes per step"
    )
    parser.add_argument("--lr", type=positive_float, default=defaults.lr, help="peak learning rate (AdamW)")
    parser.add_argument("--device", default="auto", type=training_device, help="auto, cpu or cuda")
    parser.add_argument(
        "--workers", type=non_negative_int, default=defaults.workers, help="scene-generating processes"
    )
    parser.add_argument(
        "--seed", type=non_negative_int, default=defaults.seed, help="seed of weights and scenes"
    )
    parser.add_argument(
        "--eval-scenes",
        type=positive_int,
        default=defaults.eval_scenes,
        help="held-out scenes of the quick check",
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
