"""`garasam synth`: write synthetic scenes in the Robust-Seg layout (clear/ + masks/).

The output is a `robustseg:` dataset that `garasam corrupt` can degrade and `train` / `eval` can read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from garasam.data.synthetic import SPLITS, write_scenes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder (gets clear/ and masks/)")
    parser.add_argument("--num", type=int, required=True, help="number of scenes")
    parser.add_argument("--seed", type=int, default=0, help="first scene seed; scenes are seed .. seed+num-1")
    parser.add_argument(
        "--size", type=int, default=256, help="scene height and width in pixels (default 256)"
    )
    parser.add_argument("--split", choices=SPLITS, default="train", help="shape and background families")


def run(args: argparse.Namespace) -> int:
    stats = write_scenes(
        args.out, num=args.num, seed=args.seed, size=(args.size, args.size), split=args.split
    )
    print(
        f"synth: {stats.written} scene(s) written, {stats.skipped} already present, "
        f"in {args.out} (robustseg:{args.out})"
    )
    return 0
