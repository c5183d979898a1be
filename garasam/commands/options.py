"""Flags that several commands share, declared once so that they read and parse alike."""

from __future__ import annotations

import argparse

from garasam.argtypes import ListAction


def add_degradation_flags(parser: argparse.ArgumentParser, suite_help: str, only_help: str) -> None:
    """--suite, --severities and --only: which degradations a command writes (corrupt) or scores (eval)."""
    parser.add_argument("--suite", default="robustseg", help=suite_help)
    parser.add_argument(
        "--severities",
        action=ListAction,
        type=int,
        help="comma-separated severities, e.g. 1,3,5 (default: all of the suite's)",
    )
    parser.add_argument("--only", action=ListAction, help=only_help)
