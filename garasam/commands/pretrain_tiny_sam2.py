"""`garasam pretrain-tiny-sam2`: train the bundled `sam2.1_tiny` from scratch, in stages.

    garasam pretrain-tiny-sam2 --stage images --time-budget 1800 --out sam2.1_tiny.images.safetensors
    garasam pretrain-tiny-sam2 --stage video --checkpoint sam2.1_tiny.images.safetensors --out sam2.1_tiny.safetensors

Stages and recipe: `garasam.video.pretrain_tiny`. The bundled weights are replaced only when
`--out garasam/assets/sam2.1_tiny.safetensors` names them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from garasam.argtypes import (
    int_at_least,
    non_negative_float,
    non_negative_int,
    output_file,
    positive_float,
    positive_int,
    seed,
    training_device,
)
from garasam.outputs import claim_output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from garasam.video.pretrain_tiny import Sam2PretrainConfig

    defaults = Sam2PretrainConfig()
    parser.add_argument("--stage", choices=("images", "video"), required=True, help="which stage to run")
    parser.add_argument("--out", type=output_file, default=defaults.out, help="safetensors file to write")
    parser.add_argument(
        "--checkpoint", type=Path, help="the previous stage's weights (default: from scratch)"
    )
    parser.add_argument(
        "--max-steps", type=positive_int, default=defaults.steps, help="training steps at most"
    )
    parser.add_argument("--time-budget", type=positive_float, help="stop after this many seconds")
    parser.add_argument(
        "--batch-size",
        type=int_at_least(1, 256),
        default=defaults.batch_size,
        help="scenes or clips per step",
    )
    parser.add_argument(
        "--objects", type=int_at_least(1, 16), default=defaults.objects, help="objects per scene or clip"
    )
    parser.add_argument(
        "--clip-frames",
        type=int_at_least(2, 32),
        default=defaults.clip_frames,
        help="frames per clip (video)",
    )
    parser.add_argument("--lr", type=positive_float, default=defaults.lr, help="peak learning rate (AdamW)")
    parser.add_argument(
        "--warmup-steps", type=non_negative_int, default=defaults.warmup_steps, help="linear warm-up steps"
    )
    parser.add_argument(
        "--distill",
        type=non_negative_float,
        default=defaults.distill,
        help="images stage: weight of distilling the coarse map from the bundled tiny SAM (0: off)",
    )
    parser.add_argument("--seed", type=seed, default=defaults.seed, help="seed of weights and data")
    parser.add_argument("--device", default="auto", type=training_device, help="auto, cpu or cuda")
    parser.add_argument(
        "--eval-items",
        type=int_at_least(1, 1000),
        default=defaults.eval_items,
        help="held-out clips of the quick check",
    )


def run(args: argparse.Namespace) -> int:
    from garasam.video.pretrain_tiny import Sam2PretrainConfig, pretrain

    out = Path(args.out).absolute()
    with claim_output(out.parent, "pretrain-tiny-sam2", lock_name=f".{out.name}.lock"):
        card = pretrain(
            Sam2PretrainConfig(
                stage=args.stage,
                out=args.out,
                init=args.checkpoint,
                steps=args.max_steps,
                time_budget=args.time_budget,
                batch_size=args.batch_size,
                objects=args.objects,
                clip_frames=args.clip_frames,
                lr=args.lr,
                warmup_steps=args.warmup_steps,
                seed=args.seed,
                device=args.device,
                eval_items=args.eval_items,
                distill=args.distill,
            )
        )
    print(
        f"pretrain-tiny-sam2 ({args.stage}): {card['training']['steps_done']} steps in "
        f"{card['training']['seconds']:.0f} s; held-out {card['held_out']}; weights in {args.out}"
    )
    return 0
