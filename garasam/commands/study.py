"""`garasam study`: the pre-registered miniature study (docs/miniature.md), resumable.

Every arm (frozen, full fine-tuning, LoRA-16/128/256, MoE-LoRA, GaRA and its three ablations) is
trained with each seed on degraded target-family scenes and evaluated on the seen and zero-shot test
sets; tables with bootstrap 95% intervals and the paper's claims go to study.md and study.json.
`--video`: the robust-video miniature instead (docs/video-miniature.md, `garasam.video.study`).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from garasam.argtypes import ListAction, output_dir, seed, training_device
from garasam.io import atomic_write_text
from garasam.miniature.plan import ARMS, PLANS, STUDY_ARMS, VARIANT_OF
from garasam.video.study_plan import ARMS as VIDEO_ARMS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=output_dir, default=Path("study_out"), help="output folder (default: study_out)"
    )
    parser.add_argument(
        "--seeds",
        action=ListAction,
        type=seed,
        default=None,
        help="comma-separated training seeds (default: the plan's, 0,1,2)",
    )
    parser.add_argument(
        "--arms",
        action=ListAction,
        default=None,
        help=f"comma-separated arms (default: the study's, {', '.join(STUDY_ARMS)}; fidelity variants: "
        f"{', '.join(VARIANT_OF)}; all: {', '.join(ARMS)}; with --video: {', '.join(VIDEO_ARMS)})",
    )
    parser.add_argument(
        "--video",
        action="store_true",
        help="the robust-video miniature (docs/video-miniature.md) on the bundled sam2.1_tiny",
    )
    parser.add_argument(
        "--quick", action="store_true", help="the quick plan's sizes (a smoke test, not the study)"
    )
    parser.add_argument("--device", default="auto", type=training_device, help="auto, cpu or cuda")


def run(args: argparse.Namespace) -> int:
    from garasam.miniature.runner import run_miniature
    from garasam.outputs import claim_output

    if args.video:
        return _run_video(args)
    plan = PLANS["study"]
    if args.quick:
        quick = PLANS["quick"]
        plan = replace(
            plan,
            **{k: getattr(quick, k) for k in ("train_scenes", "seen_scenes", "zero_shot_scenes", "steps")},
        )
    if args.seeds is not None:
        plan = replace(plan, seeds=tuple(args.seeds))
    if args.arms is not None:
        plan = replace(plan, arms=tuple(args.arms))
    with claim_output(args.out, "study"):
        summary = run_miniature(args.out, plan, device=args.device)
        atomic_write_text(args.out / "study.md", summary["markdown"])
    print(summary["markdown"])
    print(f"wall time {summary['wall_time_s']:.0f} s; tables in {args.out / 'study.md'}")
    return 0


def _run_video(args: argparse.Namespace) -> int:
    from garasam.outputs import claim_output
    from garasam.video.study import run_video_study
    from garasam.video.study_plan import PLANS as VIDEO_PLANS

    plan = VIDEO_PLANS["study"]
    if args.quick:  # the quick plan's sizes, the study's arms and seeds
        quick = VIDEO_PLANS["quick"]
        sizes = ("train_clips", "test_clips", "steps", "clip_frames", "train_frames", "degradations")
        plan = replace(plan, **{k: getattr(quick, k) for k in (*sizes, "bootstrap_replicates")})
    if args.seeds is not None:
        plan = replace(plan, seeds=tuple(args.seeds))
    if args.arms is not None:
        plan = replace(plan, arms=tuple(args.arms))
    with claim_output(args.out, "study"):
        summary = run_video_study(args.out, plan, device=args.device)
    print(summary["markdown"])
    print(f"wall time {summary['wall_time_s']:.0f} s; tables in {args.out / 'study.md'}")
    return 0
