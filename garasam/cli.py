"""`garasam` command line: one sub-command per job, each defined next to the code it drives.

Sub-commands are imported lazily so that `garasam --help` and each command start fast.
A command module exposes `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from garasam.errors import GarasamError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("garasam.demo", "miniature GaRA-SAM reproduction on the bundled tiny SAM (no downloads)"),
    "synth": ("garasam.data.synth_cmd", "write synthetic scenes in the Robust-Seg layout"),
    "corrupt": ("garasam.data.corrupt", "write a degraded dataset in the Robust-Seg layout"),
    "train": ("garasam.train.cmd", "train adapters on a frozen SAM"),
    "eval": ("garasam.eval.cmd", "robustness evaluation per degradation, with tables and plots"),
    "predict": ("garasam.predict.cmd", "prompted or automatic masks for images"),
    "serve": ("garasam.predict.web", "web page comparing SAM and GaRA-SAM"),
    "study": (
        "garasam.miniature.cmd",
        "the pre-registered miniature study: every arm, 3 seeds, 95% intervals",
    ),
    "pretrain-tiny": ("garasam.train.pretrain_tiny", "train the bundled tiny SAM from scratch"),
}


def _parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="garasam", description="GaRA-SAM: robust Segment Anything.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module_name).add_arguments(sub_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = _parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except GarasamError as err:
        print(f"garasam {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"garasam {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
