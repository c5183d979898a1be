"""`garasam eval`: the robustness benchmark for one or more models, with tables, plots and a sheet.

    garasam eval --data robustseg:data/test --suite robustseg --prompts point,box \\
        --model frozen=none --model gara=runs/gara/adapters --out runs/eval

Every `--model NAME=ADAPTERS` is the same base SAM (`--model-type`/`--checkpoint`, default the bundled tiny
model) with the adapters of that folder loaded (`none` = the frozen SAM). `--model NAME=TYPE:CHECKPOINT`
(optionally `:ADAPTERS`) brings its own backbone, e.g. the paper's Table 1 baselines:

    garasam eval --data robustseg:data/test --model sam=vit_b:sam_vit_b_01ec64.pth \
        --model hqsam=hq_vit_b:sam_hq_vit_b.pth --model robustsam=robust_vit_b:robustsam_checkpoint_b.pth \
        --model gara=vit_b:sam_vit_b_01ec64.pth:runs/gara/adapters --out runs/table1

Every model sees the same images, degradations and prompts. Under `torchrun` the images are split over
the processes and rank 0 writes the report.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from garasam.argtypes import (
    ListAction,
    device,
    non_negative_int,
    output_dir,
    positive_int,
    seed,
    unit_float,
    worker_count,
)
from garasam.assembly.spec import ModelSpec
from garasam.commands.options import add_degradation_flags
from garasam.errors import ConfigError
from garasam.eval.paper import PAPER_TABLES

if TYPE_CHECKING:
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, help="dataset, <reader>:<path> (robustseg, coco, folder, cityscapes)"
    )
    parser.add_argument(
        "--out", required=True, type=output_dir, help="output folder for results, tables and plots"
    )
    add_degradation_flags(
        parser,
        suite_help="degradation suite: robustseg, imagenet-c, or none (score the images as they are)",
        only_help="comma-separated degradation names, or clean for none (default: the whole suite)",
    )
    parser.add_argument(
        "--prompts",
        action=ListAction,
        default=["point", "box"],
        help="prompt kinds: point, box or point,box (default: point,box)",
    )
    parser.add_argument(
        "--model",
        action="append",
        metavar="NAME=SPEC",
        help="a model to compare, repeatable (default: frozen=none). SPEC: none (the --model-type/--checkpoint "
        "SAM), ADAPTERS (that SAM with an adapters folder), TYPE:CHECKPOINT (another backbone, e.g. "
        "hq_vit_b:sam_hq_vit_b.pth or robust_vit_b:robustsam_checkpoint_b.pth; CHECKPOINT none = bundled "
        "or random weights) or TYPE:CHECKPOINT:ADAPTERS",
    )
    parser.add_argument(
        "--adapters",
        action="append",
        type=Path,
        metavar="DIR",
        help="adapter folder to compare with the frozen SAM, named after its run folder (repeatable); "
        "short for --model frozen=none --model NAME=DIR",
    )
    parser.add_argument(
        "--model-type",
        help="backbone of the models given as none or ADAPTERS: vit_b, vit_l, vit_h, tiny, hq_*, robust_* "
        "or sam2.1_* (default tiny)",
    )
    parser.add_argument("--sam", dest="model_type", help=argparse.SUPPRESS)  # the former name
    parser.add_argument(
        "--checkpoint", help="SAM checkpoint for --model-type (default: bundled tiny weights)"
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="allow --model-type vit_b/l/h without --checkpoint (random weights: for timing and tests only)",
    )
    parser.add_argument(
        "--source",
        default="fly",
        choices=("fly", "disk"),
        help="degrade on the fly or read the "
        "dataset's degradation folders (robustseg layout, see `garasam corrupt`)",
    )
    parser.add_argument("--max-images", type=positive_int, help="evaluate only the first N images")
    parser.add_argument("--seed", type=seed, default=0, help="base seed of the degradations (default 0)")
    parser.add_argument("--device", type=device, default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16"),
        help="auto = bf16 autocast on GPU, fp32 on CPU",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=8, help="views of one image per encoder batch (default 8)"
    )
    parser.add_argument(
        "--workers",
        type=worker_count,
        help="data-loading and degradation processes (default: min(4, CPUs) on GPU, 0 on CPU)",
    )
    video = parser.add_argument_group("video (--data davis:PATH or frames:PATH; docs/video.md)")
    video.add_argument("--video", action="store_true", help="track clips with SAM 2.1 and score J, F and J&F")
    video.add_argument(
        "--protocol",
        action=ListAction,
        default=["clicks"],
        help="with --video: semi (first-frame mask), clicks (3 clicks from it) and/or box (default: clicks)",
    )
    video.add_argument(
        "--intensity-low",
        type=unit_float,
        help="with --video: a smooth random intensity per clip between this and 1 (default: full strength)",
    )
    video.add_argument("--max-clips", type=positive_int, help="with --video: evaluate only the first N clips")
    parser.add_argument("--objects", default="all", choices=("all", "largest"), help="objects per image")
    parser.add_argument("--max-objects", type=positive_int, help="at most N (largest) objects per image")
    parser.add_argument(
        "--min-area", type=non_negative_int, default=0, help="skip objects smaller than this many pixels"
    )
    parser.add_argument(
        "--examples",
        type=non_negative_int,
        default=3,
        help="images on the qualitative sheets (default 3, 0 = none)",
    )
    parser.add_argument(
        "--paper",
        choices=sorted(PAPER_TABLES),
        help="add the paper's published numbers for this test set beside ours in summary.md "
        "(lvis: Table 1, ViT-B; bdd_lis, acdc: the real-degradation table, ViT-L, box)",
    )
    parser.add_argument(
        "--example-degradations",
        action=ListAction,
        help="comma-separated degradations on the sheets (default: three spread over the suite)",
    )


def model_specs(models: list[str] | None, adapters: list[Path] | None) -> list[str]:
    """--model entries, then one per --adapters folder (`runs/gara/adapters` is named `gara`), after a
    frozen SAM unless --model names the models itself."""
    specs = list(models or ([] if adapters else ["frozen=none"]))
    if adapters and not models:
        specs.insert(0, "frozen=none")
    for folder in adapters or []:
        name = folder.parent.name if folder.name == "adapters" and folder.parent.name else folder.name
        specs.append(f"{name}={folder}")
    return specs


_SPEC_FORMS = "NAME=none, NAME=ADAPTERS, NAME=TYPE:CHECKPOINT or NAME=TYPE:CHECKPOINT:ADAPTERS"


def parse_model_specs(specs: Sequence[str]) -> dict[str, ModelSpec]:
    """`--model` values -> {name: ModelSpec}, in the given order (see `add_arguments` for the forms)."""
    from garasam.models import MODEL_TYPES

    models: dict[str, ModelSpec] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise ConfigError(f"--model {spec!r}: expected {_SPEC_FORMS}")
        if name in models:
            raise ConfigError(f"--model {spec!r}: the name {name!r} is used twice")
        head, colon, rest = value.partition(":")
        if not colon:
            models[name] = ModelSpec(adapters=None if value.lower() == "none" else Path(value))
            continue
        if head not in MODEL_TYPES:
            raise ConfigError(
                f"--model {spec!r}: {head!r} is not a model type (one of {', '.join(MODEL_TYPES)}); "
                f"expected {_SPEC_FORMS}"
            )
        checkpoint, _, adapters = rest.partition(":")
        if not checkpoint.strip():
            raise ConfigError(f"--model {spec!r}: no checkpoint after {head}: (write none for no checkpoint)")
        models[name] = ModelSpec(
            head,
            None if checkpoint.strip().lower() == "none" else checkpoint.strip(),
            Path(adapters.strip()) if adapters.strip() else None,
        )
    return models


def warn_training_overlap(
    specs: Mapping[str, ModelSpec], info: dict[str, dict[str, Any]], dataset: Any, max_images: int | None
) -> None:
    """Warn (and record in the report) when adapters were trained on some of the evaluated images."""
    from garasam.data.provenance import overlap, read_training_data

    count = len(dataset) if max_images is None else min(max_images, len(dataset))
    for name, spec in specs.items():
        record = None if spec.adapters is None else read_training_data(spec.adapters)
        if record is None:
            continue
        seen = overlap(record, (dataset.image_path(i) for i in range(count)))
        if seen:
            info[name]["training_overlap"] = {
                "images": seen,
                "of": count,
                "training_data": record.get("specs"),
            }
            warnings.warn(
                f"{name}: {seen} of the {count} evaluated images were among its training images "
                f"({', '.join(record.get('specs') or [])}); its scores on them are not held-out results",
                stacklevel=2,
            )


def run(args: argparse.Namespace) -> int:
    from garasam.outputs import claim_output
    from garasam.runtime import join_process_group, leave_process_group

    if args.video:
        from garasam.commands.eval_video import evaluate_videos

        specs = parse_model_specs(model_specs(args.model, args.adapters))
        with claim_output(args.out, "eval"):
            return evaluate_videos(args, specs)
    for flag in ("intensity_low", "max_clips"):
        if getattr(args, flag) is not None:
            raise ConfigError(f"--{flag.replace('_', '-')} is for --video")
    ctx = join_process_group(args.device)
    try:
        # checked and locked before hours of work: an unwritable --out would lose every result
        with claim_output(args.out, "eval", writer=ctx.rank == 0):
            _evaluate(args, str(ctx.device), ctx.rank)
    finally:
        leave_process_group(ctx)
    return 0


def _evaluate(args: argparse.Namespace, device: str, rank: int) -> None:
    import torch

    from garasam.assembly import build_models
    from garasam.data.readers import open_dataset
    from garasam.eval.conditions import plan_conditions
    from garasam.eval.protocol import evaluate
    from garasam.eval.report import headline_table, write_report

    severities, only = args.severities, args.only
    conditions = plan_conditions(args.suite, severities, only)
    example_names = args.example_degradations
    example_conditions = None
    if example_names is not None:
        unknown = sorted(set(example_names) - {c.degradation for c in conditions[1:]})
        if unknown:
            raise ConfigError(f"--example-degradations: {unknown} are not evaluated in this run")
        example_conditions = [max(c for c in conditions if c.degradation == name) for name in example_names]
    specs = parse_model_specs(model_specs(args.model, args.adapters))
    torch.manual_seed(args.seed)  # a SAM without weights (tiny before pretraining) is drawn from it
    models, info = build_models(
        specs, args.model_type, args.checkpoint, device, random_weights=args.random_weights
    )
    dataset = open_dataset(
        args.data, objects=args.objects, max_objects=args.max_objects, min_area=args.min_area
    )
    warn_training_overlap(specs, info, dataset, args.max_images)
    workers = (
        args.workers
        if args.workers is not None
        else (min(4, os.cpu_count() or 1) if device.startswith("cuda") else 0)
    )
    results = evaluate(
        models,
        dataset,
        args.suite,
        args.prompts,
        severities,
        degradations=only,
        source=args.source,
        seed=args.seed,
        max_images=args.max_images,
        device=device,
        precision=args.precision,
        batch_size=args.batch_size,
        workers=workers,
        examples=args.examples,
        example_conditions=example_conditions,
        model_info=info,
        dataset_name=args.data,
    )
    if rank == 0:
        results.config["paper"] = args.paper
        written = write_report(results, args.out)
        print("\n".join(headline_table(results)))
        print(
            f"{results.num_images} images x {len(results.conditions)} conditions x {len(models)} models "
            f"in {results.wall_time_s:.1f} s; wrote {len(written)} files to {args.out}"
        )
        summary = getattr(dataset, "problem_summary", None)
        if results.problems and summary is not None:
            print(summary(), file=sys.stderr)
