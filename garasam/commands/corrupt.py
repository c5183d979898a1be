"""`garasam corrupt`: write a degraded copy of a dataset in the Robust-Seg layout, resumable, in parallel."""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from garasam.argtypes import MAX_WORKERS, int_at_least, output_dir, seed, unit_float
from garasam.commands.options import add_degradation_flags
from garasam.data.corrupt import (
    MANIFEST,
    Job,
    Result,
    expected_files,
    init_worker,
    plan_outputs,
    process_image,
    work_on,
)
from garasam.data.readers import (
    open_dataset,
)
from garasam.errors import ConfigError, DataError
from garasam.io import remove_stale_temp_files
from garasam.outputs import claim_output, pin_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", help="source dataset, <reader>:<path> (robustseg, coco, folder, cityscapes)"
    )
    parser.add_argument("--out", type=output_dir, help="output folder (Robust-Seg layout)")
    add_degradation_flags(
        parser,
        suite_help="degradation suite: robustseg or imagenet-c",
        only_help="comma-separated degradation names (default: the whole suite)",
    )
    parser.add_argument(
        "--workers",
        type=int_at_least(1, MAX_WORKERS),
        default=min(4, os.cpu_count() or 1),
        help="worker processes (default min(4, CPUs))",
    )
    parser.add_argument("--seed", type=seed, default=0, help="base seed of every degradation (default 0)")
    parser.add_argument(
        "--strict", action="store_true", help="stop at the first bad image instead of skipping it"
    )
    parser.add_argument("--list", action="store_true", help="list the suites, degradations and folder names")
    video = parser.add_argument_group("video (--data davis:PATH or frames:PATH)")
    video.add_argument(
        "--video",
        action="store_true",
        help="degrade video clips coherently in time (frames + masks layout out; docs/video.md)",
    )
    video.add_argument(
        "--intensity-low",
        type=unit_float,
        help="with --video: a smooth random intensity per clip between this and 1 (default: full strength)",
    )


def _list_suites() -> int:
    from garasam.data.degradations import SUITES, folder_name, get_suite

    for suite in SUITES:
        print(f"{suite}:")
        for degradation in get_suite(suite):
            folders = list(dict.fromkeys(folder_name(degradation, s) for s in degradation.severities))
            folders = folders[0] if len(folders) == 1 else f"{folders[0]} .. {folders[-1]}"
            flags = " (geometric: masks warped)" if degradation.geometric else ""
            print(f"  {degradation.name:<20} severities {list(degradation.severities)} -> {folders}/{flags}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.list:
        return _list_suites()
    if not args.data or args.out is None:
        raise ConfigError("--data and --out are required (or use --list)")
    if args.intensity_low is not None and not args.video:
        raise ConfigError("--intensity-low is for --video")
    with claim_output(args.out, "corrupt"):
        return _corrupt_video(args) if args.video else _corrupt(args)


def _corrupt_video(args: argparse.Namespace) -> int:
    from garasam.video.clips import open_clips
    from garasam.video.corrupt import corrupt_clips

    outputs = [
        (o.degradation, o.severity, o.folder) for o in plan_outputs(args.suite, args.severities, args.only)
    ]
    clips = open_clips(args.data)
    remove_stale_temp_files(args.out)
    start = time.perf_counter()
    report = corrupt_clips(clips, args.out, outputs, args.suite, args.seed, args.intensity_low, args.data)
    print(
        f"corrupt --video: {len(clips)} clip(s), clean + {len(outputs)} degraded folder(s) in {args.out}: "
        f"{len(report.written)} clip(s) written, {len(report.skipped)} already complete, "
        f"{time.perf_counter() - start:.1f} s"
    )
    return 0


def _corrupt(args: argparse.Namespace) -> int:
    outputs = plan_outputs(args.suite, args.severities, args.only)
    reader = open_dataset(args.data, strict=args.strict)
    discovery_problems = [
        str(problem) for problem in reader.problems
    ]  # pairing; loading problems come back per image
    out: Path = args.out
    ids = [reader.image_id(i) for i in range(len(reader))]
    duplicates = [name for name, count in Counter(ids).items() if count > 1]
    if duplicates:
        raise DataError(
            f"{args.data}: image ids must be unique to name output files, repeated: {duplicates[:5]}"
        )
    pin_settings(
        out, MANIFEST, {"suite": args.suite, "seed": args.seed, "data": args.data}, keys=("suite", "seed")
    )
    remove_stale_temp_files(out)

    pending = [
        i
        for i, image_id in enumerate(ids)
        if not all(p.is_file() for p in expected_files(out, image_id, outputs))
    ]
    job = Job(reader=reader, out=out, suite=args.suite, outputs=outputs, seed=args.seed, strict=args.strict)
    total = Result()
    start = time.perf_counter()
    workers = min(args.workers, len(pending))
    bar = tqdm(total=len(pending), desc="corrupt", unit="img", dynamic_ncols=True)
    if workers <= 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(
            1
        )  # small per-image ops: extra threads only contend (10x slower on a busy machine)
        try:
            _collect((process_image(job, index) for index in pending), total, bar)
        finally:
            torch.set_num_threads(threads)
    else:
        with multiprocessing.get_context().Pool(workers, initializer=init_worker, initargs=(job,)) as pool:
            _collect(pool.imap_unordered(work_on, pending), total, bar)
    bar.close()
    elapsed = time.perf_counter() - start
    problems = discovery_problems + total.problems
    complete = len(ids) - len(pending)
    kept = total.existing + complete * (2 + sum(1 + output.geometric for output in outputs))
    per_image = f", {elapsed / len(pending):.2f} s/image" if pending else ""
    print(
        f"corrupt: {len(ids)} image(s), clear + {len(outputs)} degraded folder(s) in {out}: "
        f"{total.written} file(s) written, {kept} already present ({complete} image(s) complete before this run), "
        f"{len(problems)} problem(s), {elapsed:.1f} s{per_image} with {max(workers, 1)} worker(s)"
    )
    for problem in problems[:10]:
        print(f"  problem: {problem}", file=sys.stderr)
    if len(problems) > 10:
        print(f"  ... and {len(problems) - 10} more", file=sys.stderr)
    if pending and total.written == 0 and total.problems:
        raise DataError(f"{args.data}: no image could be processed; first problem: {total.problems[0]}")
    return 0


def _collect(results: Any, total: Result, bar: tqdm) -> None:
    for result in results:
        total.written += result.written
        total.existing += result.existing
        total.problems.extend(result.problems)
        bar.update(1)
