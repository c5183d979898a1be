"""`garasam demo`: the miniature study's core with one seed, offline, on the bundled tiny SAM.

1. Synthetic scenes of the `target` family (train split and seen test split) and of the `zero_shot`
   family (test only); the tiny SAM was pretrained on the `source` family alone.
2. LoRA-128 (the paper's best fixed rank) and GaRA trained with identical settings on degraded target
   scenes (clean plus the 15 robustseg degradations, uniformly).
3. Frozen tiny SAM, LoRA-128 and GaRA evaluated on Clear and every degradation with point and box
   prompts on both test sets; full reports (tables, plots, gate heatmap, qualitative sheets).
4. Bootstrap 95% intervals for every number and the paper's claims, judged as the study
   pre-registers them (docs/miniature.md): holds / does not hold / within noise.

The settings are the study's (garasam.miniature.plan), fixed before any of its results were seen;
`garasam study` runs every arm with three seeds. `--checkpoint`/`--data` run the same flow on real
SAM weights and data. `--video`: the robust-video miniature's core instead (frozen, per-frame GaRA,
GaRA in the encoder and the memory attention; seen and zero-shot clips; docs/video-miniature.md).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from garasam.argtypes import output_dir, positive_int, training_device
from garasam.io import atomic_write_text
from garasam.miniature.plan import PLANS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=output_dir, default=Path("demo_out"), help="output folder (default: demo_out)"
    )
    parser.add_argument("--quick", action="store_true", help="a smaller run of about three minutes")
    parser.add_argument(
        "--video",
        action="store_true",
        help="the video miniature's core on the bundled sam2.1_tiny (docs/video-miniature.md)",
    )
    parser.add_argument(
        "--model-type", default=None, help="SAM backbone of --checkpoint (vit_b, vit_l, vit_h)"
    )
    parser.add_argument("--sam", dest="model_type", help=argparse.SUPPRESS)  # the former name
    parser.add_argument("--checkpoint", default=None, help="real SAM weights instead of the bundled tiny SAM")
    parser.add_argument(
        "--data", default=None, help="training data `reader:path` instead of synthetic scenes"
    )
    parser.add_argument("--test-data", default=None, help="seen evaluation data `reader:path` (with --data)")
    parser.add_argument(
        "--zero-shot-data",
        default=None,
        help="zero-shot evaluation data `reader:path` (optional, with --data)",
    )
    parser.add_argument(
        "--max-steps", type=positive_int, default=None, help="training steps per adapter (plan default)"
    )
    parser.add_argument(
        "--steps", dest="max_steps", type=positive_int, help=argparse.SUPPRESS
    )  # the former name
    parser.add_argument("--device", default="auto", type=training_device, help="auto, cpu or cuda")


def run(args: argparse.Namespace) -> int:
    from garasam.errors import ConfigError
    from garasam.miniature.runner import run_miniature
    from garasam.outputs import claim_output

    if args.video:
        return _run_video(args)
    plan = PLANS["quick" if args.quick else "demo"]
    if args.max_steps is not None:
        plan = replace(plan, steps=args.max_steps)
    if args.zero_shot_data is not None and args.data is None:
        raise ConfigError("--zero-shot-data goes with --data and --test-data")
    test_data = None
    if args.test_data is not None:
        test_data = {"seen": args.test_data}
        if args.zero_shot_data is not None:
            test_data["zero_shot"] = args.zero_shot_data
    with claim_output(args.out, "demo"):
        summary = run_miniature(
            args.out,
            plan,
            model_type=args.model_type,
            checkpoint=args.checkpoint,
            data=args.data,
            test_data=test_data,
            device=args.device,
            examples=4,
        )
        atomic_write_text(args.out / "demo.md", summary["markdown"])
    print(summary["markdown"])
    print(
        f"wall time {summary['wall_time_s']:.0f} s; reports in {args.out / 'eval'}, tables in {args.out / 'demo.md'}"
    )
    return 0


def _run_video(args: argparse.Namespace) -> int:
    from garasam.errors import ConfigError
    from garasam.outputs import claim_output
    from garasam.video.study import run_video_study
    from garasam.video.study_plan import PLANS as VIDEO_PLANS

    given = [
        flag
        for flag, value in (
            ("--checkpoint", args.checkpoint),
            ("--data", args.data),
            ("--test-data", args.test_data),
            ("--zero-shot-data", args.zero_shot_data),
            ("--model-type", args.model_type),
        )
        if value is not None
    ]
    if given:
        raise ConfigError(
            f"--video runs on the bundled sam2.1_tiny and synthetic clips: {', '.join(given)} do not apply"
        )
    plan = VIDEO_PLANS["quick" if args.quick else "demo"]
    if args.max_steps is not None:
        plan = replace(plan, steps=args.max_steps)
    with claim_output(args.out, "demo"):
        summary = run_video_study(args.out, plan, device=args.device)
        atomic_write_text(args.out / "demo.md", summary["markdown"])
    print(summary["markdown"])
    print(f"wall time {summary['wall_time_s']:.0f} s; tables in {args.out / 'demo.md'}")
    return 0
