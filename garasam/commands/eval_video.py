"""`garasam eval --video`: SAM 2.1 trackers (with or without adapters) scored with J, F and J&F on
clean and degraded clips (`garasam.video.evaluate`), with results.json, summary.md and plots.

    garasam eval --video --data frames:clips/ --model-type sam2.1_mini --random-weights --only fog --out ev/

Every input is checked before a model loads; records are written as they are computed and a rerun
into the same folder with the same settings computes only what is missing.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping

from garasam.assembly.spec import ModelSpec
from garasam.errors import ConfigError
from garasam.outputs import pin_settings

SETTINGS = "video_settings.json"


def evaluate_videos(args: argparse.Namespace, specs: Mapping[str, ModelSpec]) -> int:
    """Run the video evaluation of `garasam eval --video` for the models `specs` (parsed by eval)."""
    import torch

    from garasam.assembly import build_models
    from garasam.models.registry import MODEL_TYPES, family_of
    from garasam.video.clips import open_clips
    from garasam.video.evaluate import PROTOCOLS, evaluate_video, plan_video_conditions
    from garasam.video.report import write_video_report

    protocols = list(dict.fromkeys(args.protocol))
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ConfigError(f"--protocol: unknown {unknown}; protocols: {', '.join(PROTOCOLS)}")
    suite = None if args.suite == "none" else args.suite
    conditions = plan_video_conditions(suite, args.severities, args.only)
    clips = open_clips(args.data)[: args.max_clips]
    model_type = args.model_type or "sam2.1_tiny"  # the bundled SAM 2.1
    types = [spec.model_type or model_type for spec in specs.values()]
    wrong = [t for t in types if t not in MODEL_TYPES or family_of(t) != "sam2"]
    if wrong:
        raise ConfigError(
            f"--video tracks with SAM 2.1: model type(s) {wrong} have no video mode (use sam2.1_*)"
        )
    settings = {
        "data": args.data,
        "suite": suite,
        "conditions": [c.folder for c in conditions],
        "protocols": protocols,
        "seed": args.seed,
        "intensity_low": args.intensity_low,
        "max_objects": args.max_objects,
        "models": {
            name: [spec.model_type or model_type, str(spec.checkpoint or args.checkpoint), str(spec.adapters)]
            for name, spec in specs.items()
        },
    }
    pin_settings(args.out, SETTINGS, settings)
    torch.manual_seed(args.seed)
    models, _ = build_models(
        specs, model_type, args.checkpoint, args.device, random_weights=args.random_weights, video=True
    )
    start = time.perf_counter()
    records = evaluate_video(
        models,
        clips,
        conditions,
        protocols,
        suite,
        args.seed,
        args.out / "records",
        intensity_low=args.intensity_low,
        max_objects=args.max_objects,
    )
    summary = write_video_report(args.out, records, [c.name for c in clips], settings)
    print(
        f"eval --video: {len(clips)} clip(s) x {len(conditions)} condition(s) x {len(models)} model(s) in "
        f"{time.perf_counter() - start:.1f} s -> {args.out / 'summary.md'}"
    )
    for protocol in protocols:
        for name in models:
            cells = summary.get(name, {}).get(protocol, {})
            row = ", ".join(f"{c} {100 * v['J&F']['value']:.1f}" for c, v in cells.items())
            print(f"  {protocol} {name}: J&F {row}")
    return 0
