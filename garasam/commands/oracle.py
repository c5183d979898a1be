"""`garasam oracle`: Oracle-Corrupt and Oracle-Instance over several evaluated models (paper Fig. 2b)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from garasam.argtypes import ListAction, output_dir
from garasam.eval.oracle import (
    load_scores,
    oracle_markdown,
    oracle_summary,
)
from garasam.io import atomic_write_text
from garasam.outputs import claim_output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "objects", nargs="+", type=Path, metavar="OBJECTS_CSV", help="objects.csv of one or more evaluations"
    )
    parser.add_argument(
        "--model",
        dest="models",
        action=ListAction,
        help="models to compare, repeated or comma-separated (default: every model of the files), "
        "e.g. lora16,lora128,lora256",
    )
    parser.add_argument(
        "--models", dest="models", action=ListAction, help=argparse.SUPPRESS
    )  # the former name
    parser.add_argument("--out", type=output_dir, default=Path("oracle_out"), help="output folder")


def run(args: argparse.Namespace) -> int:
    summary = oracle_summary(load_scores(args.objects), args.models)
    markdown = oracle_markdown(summary)
    with claim_output(args.out, "oracle"):
        atomic_write_text(args.out / "oracle.json", json.dumps(summary, indent=2) + "\n")
        atomic_write_text(args.out / "oracle.md", markdown)
    print(markdown)
    print(f"written: {args.out / 'oracle.md'}, {args.out / 'oracle.json'}")
    return 0
