"""`garasam` command line: one sub-command per job, each in a module of `garasam.commands`.

Sub-commands are imported lazily so that `garasam --help` and each command start fast.
A command module exposes `add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import signal
import sys

from garasam.errors import GarasamError
from garasam.io import DISK_ERRNOS

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "garasam.commands.demo",
        "miniature GaRA-SAM reproduction on the bundled tiny SAM (no downloads)",
    ),
    "synth": ("garasam.commands.synth", "write synthetic scenes in the Robust-Seg layout"),
    "prepare": ("garasam.commands.prepare", "the paper's datasets from their official downloads (offline)"),
    "corrupt": ("garasam.commands.corrupt", "write a degraded dataset in the Robust-Seg layout"),
    "train": ("garasam.commands.train", "train adapters on a frozen SAM"),
    "eval": ("garasam.commands.eval", "robustness evaluation per degradation, with tables and plots"),
    "oracle": (
        "garasam.commands.oracle",
        "Oracle-Corrupt and Oracle-Instance over several models (paper Fig. 2b)",
    ),
    "predict": ("garasam.commands.predict", "prompted or automatic masks for images"),
    "track": ("garasam.commands.track", "follow objects through a video with SAM 2.1 (and adapters)"),
    "export": ("garasam.commands.export", "SAM with its adapters as ONNX files that run without PyTorch"),
    "serve": ("garasam.commands.serve", "web page comparing SAM and GaRA-SAM"),
    "study": (
        "garasam.commands.study",
        "the pre-registered miniature study: every arm, 3 seeds, 95% intervals",
    ),
    "pretrain-tiny": ("garasam.commands.pretrain_tiny", "train the bundled tiny SAM from scratch"),
    "pretrain-tiny-sam2": (
        "garasam.commands.pretrain_tiny_sam2",
        "train the bundled tiny SAM 2.1 from scratch",
    ),
}


# A value such as `-5,5,40,40` or `-1e-3` that argparse would read as an option.
_NEGATIVE_VALUE = re.compile(r"^-(\d|\.\d|inf|nan)", re.IGNORECASE)


def _join_negative_values(argv: list[str]) -> list[str]:
    """`--box -5,5,40,40` -> `--box=-5,5,40,40`, so a negative number reaches the option (and then
    its proper check, e.g. "outside the image") instead of argparse's "expected one argument"."""
    joined: list[str] = []
    for token in argv:
        previous = joined[-1] if joined else ""
        if _NEGATIVE_VALUE.match(token) and previous.startswith("--") and "=" not in previous:
            joined[-1] = f"{previous}={token}"
        else:
            joined.append(token)
    return joined


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse, letting `key=value` overrides stand anywhere on the line for commands that take them
    (argparse alone rejects them after an option)."""
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides"):
        overrides = [item for item in extra if "=" in item and not item.startswith("-")]
        args.overrides = list(args.overrides or []) + overrides
        extra = [item for item in extra if item not in overrides]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the text already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        quiet = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "default" in text or quiet or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)".lstrip()


def _parser(command: str | None) -> argparse.ArgumentParser:
    from garasam.version import __version__

    parser = argparse.ArgumentParser(prog="garasam", description="GaRA-SAM: robust Segment Anything.")
    parser.add_argument("--version", action="version", version=f"garasam {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        # argparse %-formats help texts: a literal "%" (e.g. "95% intervals") must be doubled
        sub_parser = sub.add_parser(
            name, help=help_text.replace("%", "%%"), description=help_text, formatter_class=_HelpFormatter
        )
        if name == command:
            importlib.import_module(module_name).add_arguments(sub_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader went away (`garasam ... | head`): stop quietly, as a Unix tool does, with no
        # second error when Python flushes stdout at exit.
        with contextlib.suppress(OSError, ValueError, AttributeError):  # a stdout without a descriptor
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE


def _main(argv: list[str] | None) -> int:
    argv = _join_negative_values(sys.argv[1:] if argv is None else list(argv))
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = _parser(command if command in COMMANDS else None)
    try:
        args = _parse(parser, argv)
    except SystemExit as exit_:  # argparse has printed its usage error (or --help): return its code
        return int(exit_.code or 0)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except GarasamError as err:
        print(f"garasam {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the disk refusing outside garasam's writers (a library's cache): named too
        if not err.filename or err.errno not in DISK_ERRNOS:
            raise
        print(f"garasam {args.command}: error: {err.filename}: {err.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"garasam {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
