"""The `garasam prepare` command: plan, convert in parallel (resumable), write the manifest."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
from collections import Counter
from pathlib import Path

from tqdm import tqdm

from garasam.argtypes import output_dir, worker_count
from garasam.data.prepare import DATASETS
from garasam.data.prepare.archives import SourceTree, describe_sources
from garasam.data.prepare.convert import Job, convert, init_worker, work_on
from garasam.errors import DataError
from garasam.io import atomic_write_bytes, atomic_write_text, remove_stale_temp_files
from garasam.outputs import claim_output

MANIFEST = "prepare.json"
MAX_LISTED = 100  # skipped items listed in the manifest; the count covers all


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=sorted(DATASETS), help="which dataset")
    parser.add_argument(
        "--src", nargs="+", type=Path, metavar="PATH", help="the downloaded archives or folders"
    )
    parser.add_argument("--out", type=output_dir, help="output folder")
    parser.add_argument("--split", help="comma-separated splits to prepare (default: every split found)")
    parser.add_argument(
        "--workers", type=worker_count, default=min(4, os.cpu_count() or 1), help="worker processes"
    )
    parser.add_argument("--strict", action="store_true", help="stop at the first damaged member")


def _instructions(name: str) -> str:
    spec = DATASETS[name]
    lines = [f"garasam prepare {name}: {spec.title}", "Download (garasam downloads nothing) from:"]
    lines += [f"  {url}" for url in spec.urls]
    lines += ["and pass the files with --src:"] + [f"  {file}" for file in spec.files]
    lines.append(
        f"e.g. garasam prepare {name} --src {' '.join(f.split()[0] for f in spec.files)} --out data/{name}"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if not args.src or args.out is None:
        print(_instructions(args.dataset), file=sys.stderr)
        print("garasam prepare: error: --src and --out are required", file=sys.stderr)
        return 2
    with claim_output(args.out, "prepare"):
        return _prepare(args, args.out)


def _prepare(args: argparse.Namespace, out: Path) -> int:
    remove_stale_temp_files(out)
    splits = [s.strip() for s in args.split.split(",") if s.strip()] if args.split else None
    tree = SourceTree(list(args.src), out / ".sources")
    plan = DATASETS[args.dataset].plan(tree, splits)
    if not plan.items and splits is not None:
        found = sorted(DATASETS[args.dataset].plan(tree, None).readers)
        raise DataError(
            f"{args.dataset}: no split {', '.join(splits)} in the sources; they hold "
            + (", ".join(found) if found else "no usable split")
        )
    if not plan.items:
        first = f"; first problem: {plan.skipped[0]}" if plan.skipped else ""
        raise DataError(
            f"{args.dataset}: nothing to prepare from {', '.join(map(str, args.src))}{first}\n{_instructions(args.dataset)}"
        )
    for target, content in plan.files.items():
        if not (out / target).is_file():
            atomic_write_bytes(out / target, content)
    job = Job(tree, out, args.strict)
    counts: dict[str, Counter] = {}
    problems = list(plan.skipped)
    bar = tqdm(total=len(plan.items), desc=f"prepare {args.dataset}", unit="image", file=sys.stderr)
    if args.workers > 0 and len(plan.items) > 1:
        with multiprocessing.get_context("spawn").Pool(args.workers, init_worker, (job,)) as pool:
            outcomes = pool.imap_unordered(work_on, plan.items, chunksize=16)
            _collect(outcomes, counts, problems, bar)
    else:
        _collect((convert(job, item) for item in plan.items), counts, problems, bar)
    bar.close()
    readers = {split: spec.format(out=out) for split, spec in plan.readers.items()}
    manifest = {
        "dataset": args.dataset,
        "sources": describe_sources(list(args.src)),
        "splits": {split: dict(c) for split, c in sorted(counts.items())},
        "readers": readers,
        "skipped": len(problems),
        "problems": problems[:MAX_LISTED],
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    for split, c in sorted(counts.items()):
        print(f"{split}: {c['images']} images ({c['written']} files written, {c['existing']} already there)")
    if problems:
        print(f"skipped {len(problems)} item(s), listed in {out / MANIFEST}; first: {problems[0]}")
    for split, spec in readers.items():
        print(f"read {split} with --data {spec}")
    return 0


def _collect(outcomes, counts: dict[str, Counter], problems: list[str], bar: tqdm) -> None:  # noqa: ANN001
    for outcome in outcomes:
        bar.update(1)
        if outcome.problem is not None:
            problems.append(outcome.problem)
            continue
        c = counts.setdefault(outcome.split, Counter())
        c["images"] += 1
        c["written"] += outcome.written
        c["existing"] += outcome.existing
