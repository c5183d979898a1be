"""`garasam synth`: write synthetic scenes in the Robust-Seg layout (clear/ + masks/).

The output is a `robustseg:` dataset that `garasam corrupt` can degrade and `train` / `eval` can read.
"""

from __future__ import annotations

import argparse

from garasam.argtypes import int_at_least, output_dir, positive_int, seed
from garasam.data.synthetic import FAMILIES, SPLITS, write_scenes
from garasam.outputs import claim_output

MAX_SCENE_SIDE = 4096  # a 100000 px scene ended in an OpenCV out-of-memory traceback


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=output_dir, required=True, help="output folder (gets clear/ and masks/)"
    )
    parser.add_argument("--num", type=positive_int, required=True, help="number of scenes")
    parser.add_argument(
        "--seed", type=seed, default=0, help="first scene seed; scenes are seed .. seed+num-1"
    )
    parser.add_argument(
        "--size",
        type=int_at_least(32, MAX_SCENE_SIDE),
        default=256,
        help=f"scene height and width in pixels, at most {MAX_SCENE_SIDE} (default 256)",
    )
    parser.add_argument(
        "--family",
        choices=FAMILIES,
        default="target",
        help="scene family: source (pretraining the tiny SAM), target (adapter training and seen test), "
        "zero_shot (test only); default target",
    )
    parser.add_argument(
        "--split",
        choices=SPLITS,
        default=None,
        help="split of the family (default: its first, train for target)",
    )

    video = parser.add_argument_group("video")
    video.add_argument(
        "--video",
        action="store_true",
        help="write clips of moving objects in the frames + masks layout instead (docs/video.md)",
    )
    video.add_argument(
        "--frames", type=int_at_least(1, 10000), default=8, help="with --video: frames per clip (default 8)"
    )


def run(args: argparse.Namespace) -> int:
    if args.video:
        from garasam.data.synthetic_video import write_clips

        with claim_output(args.out, "synth"):
            written, kept = write_clips(
                args.out, args.num, args.seed, (args.size, args.size), args.frames, args.family, args.split
            )
        print(
            f"synth --video: {written} clip(s) written, {kept} already present, in {args.out} (frames:{args.out})"
        )
        return 0
    with claim_output(args.out, "synth"):
        stats = write_scenes(
            args.out,
            num=args.num,
            seed=args.seed,
            size=(args.size, args.size),
            family=args.family,
            split=args.split,
        )
    print(
        f"synth: {stats.written} scene(s) written, {stats.skipped} already present, "
        f"in {args.out} (robustseg:{args.out})"
    )
    return 0
