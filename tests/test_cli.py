"""The command line itself: negative numbers reach their option, overrides stand anywhere, and every
numeric or path flag of every command is checked the same way (issue 13, cases 2, 4 and 11)."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import pytest

from garasam import argtypes
from garasam.argtypes import ListAction
from garasam.cli import COMMANDS, _join_negative_values, main


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--box", "-5,5,40,40"], ["--box=-5,5,40,40"]),
        (["--point", "-1,5"], ["--point=-1,5"]),
        (["--seed", "-.5"], ["--seed=-.5"]),
        (["--box", "-inf,0,1,1"], ["--box=-inf,0,1,1"]),
        (["--box", "-NaN,0,1,1"], ["--box=-NaN,0,1,1"]),
        # an option after an option, a value already joined, a positional: left alone
        (["--quick", "--out", "x"], ["--quick", "--out", "x"]),
        (["--seeds=-1"], ["--seeds=-1"]),
        (["img.png", "-h"], ["img.png", "-h"]),
    ],
)
def test_negative_values_are_joined_to_their_option(argv, expected) -> None:
    assert _join_negative_values(argv) == expected


def _train_argv(tmp_path: Path, *tail: str) -> list[str]:
    config = Path(__file__).resolve().parents[1] / "configs" / "tiny_gara.yaml"
    return ["train", "--config", str(config), "--output-dir", str(tmp_path / "run"), *tail]


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lr=-1", "optim.lr"),
        ("optim.lr=.nan", "optim.lr"),
        ("run.batch_size=0", "run.batch_size"),
        ("optim.lrr=1", "unknown key 'optim.lrr'"),
    ],
)
def test_overrides_after_an_option_are_read_and_validated(tmp_path, capsys, override, message) -> None:
    assert main(_train_argv(tmp_path, override)) == 2
    err = capsys.readouterr().err
    assert message in err and "unrecognized arguments" not in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_stray_arguments_are_still_refused(tmp_path, capsys) -> None:
    assert main(_train_argv(tmp_path, "--no-such-flag")) == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
    # commands without overrides refuse a key=value too
    assert main(["synth", "--out", str(tmp_path / "s"), "--num", "1", "optim.lr=1"]) == 2
    assert "unrecognized arguments: optim.lr=1" in capsys.readouterr().err


def _all_actions() -> list[tuple[str, argparse.Action]]:
    actions = []
    for name, (module, _) in COMMANDS.items():
        parser = argparse.ArgumentParser()
        importlib.import_module(module).add_arguments(parser)
        actions += [(name, a) for a in parser._actions if a.option_strings and a.type is not None]
    return actions


NUMERIC = {int, float}


def test_no_flag_takes_a_bare_int_or_float() -> None:
    """A bare `type=int` / `type=float` takes 0, negatives, NaN and inf: every numeric flag uses a
    checked type from garasam.argtypes instead."""
    bare = [f"{name} {'/'.join(a.option_strings)}" for name, a in _all_actions() if a.type in NUMERIC]
    assert not bare, f"unchecked numeric flags: {bare}"


def test_no_output_flag_takes_a_bare_path() -> None:
    outputs = [
        f"{name} {a.option_strings[0]}"
        for name, a in _all_actions()
        if a.dest in {"out", "output_dir"} and a.type is Path
    ]
    assert not outputs, f"output flags that accept an existing file: {outputs}"


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "x", "1e400"])
def test_every_number_type_refuses_non_finite_and_junk(bad) -> None:
    for parse in (argtypes.positive_int, argtypes.positive_float, argtypes.unit_float, argtypes.port):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)


@pytest.mark.parametrize(
    "parse, bad, good",
    [
        (argtypes.positive_int, ["0", "-1", "1.5"], [("1", 1)]),
        (argtypes.non_negative_int, ["-1"], [("0", 0)]),
        (argtypes.positive_float, ["0", "-1e-3"], [("1e-3", 1e-3)]),
        (argtypes.unit_float, ["-0.1", "1.01"], [("0", 0.0), ("1", 1.0)]),
        (argtypes.port, ["0", "65536"], [("8080", 8080)]),
    ],
)
def test_number_types_bounds(parse, bad, good) -> None:
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
    for text, value in good:
        assert parse(text) == value


def test_output_types_refuse_the_wrong_kind_of_path(tmp_path) -> None:
    file = tmp_path / "file"
    file.write_text("keep me")
    with pytest.raises(argparse.ArgumentTypeError, match="exists and is not a folder"):
        argtypes.output_dir(str(file))
    with pytest.raises(argparse.ArgumentTypeError, match="is a folder"):
        argtypes.output_file(str(tmp_path))
    assert argtypes.output_dir(str(tmp_path / "new")) == tmp_path / "new"
    assert file.read_text() == "keep me"


@pytest.mark.parametrize("command", ["eval", "predict", "synth", "corrupt", "demo", "study"])
def test_an_existing_file_as_output_folder_is_a_clear_error(tmp_path, capsys, command) -> None:
    out = tmp_path / "taken"
    out.write_text("keep me")
    required = {
        "eval": ["--data", "robustseg:x"],
        "predict": ["img.png", "--box", "1,1,5,5"],
        "synth": ["--num", "1"],
    }
    assert main([command, *required.get(command, []), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out} exists and is not a folder" in err and "Traceback" not in err
    assert out.read_text() == "keep me"


def test_train_output_dir_that_is_a_file_is_refused(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    out.write_text("keep me")
    assert main(_train_argv(tmp_path)) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    assert out.read_text() == "keep me"


def test_version(capsys) -> None:
    import garasam

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"garasam {garasam.__version__}"


def test_every_flag_has_help_and_shows_its_default(capsys) -> None:
    """Issue 20, item 8: flags of --auto and pretrain-tiny had no help and hid their defaults."""
    undocumented = [
        f"{name} {a.option_strings[0]}"
        for name, a in _all_options()
        if not a.help and a.option_strings[0] not in ("-h", "--help")
    ]
    assert not undocumented, f"flags without help: {undocumented}"
    assert main(["predict", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert (
        "grid of points per side (default: 32)" in text
        and "smaller than this many pixels (default: 0)" in text
    )
    assert "--sam" not in text and "(default: None)" not in text


def _all_options() -> list[tuple[str, argparse.Action]]:
    options = []
    for name, (module, _) in COMMANDS.items():
        parser = argparse.ArgumentParser()
        importlib.import_module(module).add_arguments(parser)
        options += [(name, a) for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS]
    return options


@pytest.mark.parametrize("flag", ["--out", "--output-dir"])
def test_one_vocabulary_with_the_former_names_kept(flag, tmp_path) -> None:
    from garasam.commands import train as train_cmd

    parser = argparse.ArgumentParser()
    train_cmd.add_arguments(parser)
    args = parser.parse_args(
        [flag, str(tmp_path), "--model-type", "vit_b", "--checkpoint", "w.pth", "--init-adapters", "runs/a b"]
    )
    settings = train_cmd.settings_from_args(args)  # typed values, not YAML text (issue 28, item 7)
    assert settings == {
        "output_dir": str(tmp_path),
        "model.init_adapters": "runs/a b",
        "model.model_type": "vit_b",
        "model.checkpoint": "w.pth",
    }
    from garasam.commands import eval as eval_cmd

    parser = argparse.ArgumentParser()
    eval_cmd.add_arguments(parser)
    for spelling in ("--model-type", "--sam"):
        assert parser.parse_args(["--data", "x", "--out", "o", spelling, "vit_l"]).model_type == "vit_l"


@pytest.mark.parametrize("command", ["predict", "eval", "serve"])
def test_inference_commands_share_one_device_syntax(command) -> None:
    parser = argparse.ArgumentParser()
    importlib.import_module(COMMANDS[command][0]).add_arguments(parser)
    action = next(a for a in parser._actions if "--device" in a.option_strings)
    for good in ("auto", "cpu", "cuda", "cuda:1", "mps"):
        assert action.type(good) == good
    with pytest.raises(argparse.ArgumentTypeError, match="expected auto, cpu, cuda, cuda:N or mps"):
        action.type("gpu")


@pytest.mark.parametrize("command", ["train", "demo", "study", "pretrain-tiny"])
def test_training_commands_say_how_to_pick_a_gpu(command) -> None:
    parser = argparse.ArgumentParser()
    importlib.import_module(COMMANDS[command][0]).add_arguments(parser)
    action = next(a for a in parser._actions if "--device" in a.option_strings)
    assert action.type("cuda") == "cuda"
    with pytest.raises(argparse.ArgumentTypeError, match="CUDA_VISIBLE_DEVICES"):
        action.type("cuda:1")


def test_every_help_prints_the_top_level_included(capsys) -> None:
    """Issue 28, item 1: `garasam` and `garasam --help` crashed on the "95% intervals" of `study`."""
    assert main([]) == 2
    assert "study" in capsys.readouterr().out
    assert main(["--help"]) == 0
    assert "95% intervals" in " ".join(capsys.readouterr().out.split())
    for name in COMMANDS:
        assert main([name, "--help"]) == 0, name
        assert capsys.readouterr().out.startswith("usage: garasam"), name


def test_every_percent_formatted_text_is_safe() -> None:
    """argparse %-formats each help text, logging each message given arguments: a literal `%` in
    either must be written `%%` (issue 28, item 1), so every one of them is formatted here."""
    from garasam.cli import _parser

    parsers = [_parser(name) for name in COMMANDS]
    subparsers = [
        action.choices[name] for action in parsers[0]._actions if action.choices for name in COMMANDS
    ]
    for parser in [*parsers, *(p for p in subparsers if isinstance(p, argparse.ArgumentParser))]:
        formatter = parser._get_formatter()
        for action in parser._actions:
            if action.help and action.help != argparse.SUPPRESS:
                formatter._expand_help(action)  # raises on a stray %
            for choice in getattr(action, "_choices_actions", []):
                formatter._expand_help(choice)
    import ast

    root = Path(__file__).resolve().parents[1] / "garasam"
    levels = {"debug", "info", "warning", "error", "exception", "critical"}
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            is_log = (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in levels
                and "log" in ast.unparse(node.func.value).lower()
            )
            if is_log and node.args:
                message = node.args[0]
                where = f"{path.name}:{node.lineno}"
                assert isinstance(message, ast.Constant) and isinstance(message.value, str), where
                message.value % (("x",) * (len(node.args) - 1))  # raises on a stray or missing %


@pytest.mark.parametrize(
    "command, former, canonical, value, dest",
    [
        ("demo", "--steps", "--max-steps", "7", "max_steps"),
        ("pretrain-tiny", "--steps", "--max-steps", "7", "max_steps"),
        ("pretrain-tiny", "--init", "--checkpoint", "w.safetensors", "checkpoint"),
        ("demo", "--sam", "--model-type", "vit_b", "model_type"),
        ("oracle", "--models", "--model", "a,b", "models"),
    ],
)
def test_one_name_per_concept_and_the_former_spellings_hidden(
    command, former, canonical, value, dest
) -> None:
    """Issue 28, item 7: --steps / --max-steps, --init / --checkpoint, args.sam / args.model_type and
    --models / --model were different names for one concept; the former ones still parse."""
    parser = argparse.ArgumentParser()
    importlib.import_module(COMMANDS[command][0]).add_arguments(parser)
    head = ["x.csv"] if command == "oracle" else []
    assert getattr(parser.parse_args([*head, former, value]), dest) == getattr(
        parser.parse_args([*head, canonical, value]), dest
    )
    assert former not in parser.format_help() and canonical in parser.format_help()


def test_lists_repeat_and_split_on_commas_the_same_way_everywhere() -> None:
    """Issue 28, item 7: one convention for lists of names and numbers (argtypes.ListAction)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", action=argtypes.ListAction)
    parser.add_argument("--severities", action=argtypes.ListAction, type=int)
    parser.add_argument("--prompts", action=argtypes.ListAction, default=["point", "box"])
    args = parser.parse_args(
        ["--only", "fog, snow", "--only", "rain", "--severities", "1,3", "--prompts", "box"]
    )
    assert args.only == ["fog", "snow", "rain"] and args.severities == [1, 3]
    assert args.prompts == ["box"]  # a given value replaces the default instead of adding to it
    assert parser.parse_args([]).prompts == ["point", "box"]
    for bad in (["--severities", "1,x"], ["--only", "fog,,snow"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    list_flags = {
        (name, a.option_strings[0]) for name, a in _all_options() if isinstance(a, argtypes.ListAction)
    }
    assert {
        ("eval", "--only"),
        ("corrupt", "--severities"),
        ("study", "--seeds"),
        ("oracle", "--model"),
    } <= list_flags


@pytest.mark.parametrize(
    "argv, message",
    [
        (["synth", "--out", "x", "--num", "1", "--size", "100000"], "must be at most 4096"),
        (["predict", "img.png", "--auto", "--points-per-side", "1000"], "must be at most 128"),
    ],
)
def test_sizes_and_counts_have_a_sane_bound(argv, message, capsys) -> None:
    """Issue 29, item 9: synth --size 100000 died in OpenCV; --points-per-side 1000 ran for minutes."""
    assert main(argv) == 2
    assert message in capsys.readouterr().err


class _ClosedPipe:
    """A stdout whose reader has gone (`garasam ... | head` after head exits)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_output_to_a_closed_pipe_ends_quietly(monkeypatch, capsys) -> None:
    """Issue 29: whatever a command prints goes to a pipe without a traceback (`garasam corrupt
    --list | head -1`); argparse's own help already ignores a closed pipe."""
    import signal
    import sys

    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["corrupt", "--list"]) == 128 + signal.SIGPIPE
    assert main(["--help"]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_every_seed_and_worker_count_is_bounded() -> None:
    """Issue 29, item 9: `eval --seed 99999999999999999999` ended in torch's "Overflow when unpacking
    long long"; `--workers 100000` would start 100,000 processes."""
    actions = []
    for name, (module, _) in COMMANDS.items():
        parser = argparse.ArgumentParser()
        importlib.import_module(module).add_arguments(parser)
        actions += [(name, a) for a in parser._actions if a.option_strings]
    seeds = [(n, a) for n, a in actions if "seed" in a.dest]
    workers = [(n, a) for n, a in actions if a.dest == "workers"]
    assert {n for n, _ in seeds} >= {"corrupt", "eval", "synth", "pretrain-tiny", "study"}
    assert {n for n, _ in workers} >= {"corrupt", "eval", "prepare", "pretrain-tiny"}
    for name, action in seeds + workers:
        parse = action.item_type if isinstance(action, ListAction) else action.type
        too_big = "4294967296" if "seed" in action.dest else "257"
        with pytest.raises(argparse.ArgumentTypeError, match="must be at most"):
            parse(too_big)
        assert parse(too_big[:-1] if "seed" in action.dest else "8") >= 0, name


def test_a_huge_seed_is_an_error_not_a_traceback(tmp_path, capsys) -> None:
    argv = ["eval", "--data", f"robustseg:{tmp_path}", "--out", str(tmp_path / "o"), "--seed", "1" + "0" * 20]
    assert main(argv) == 2
    assert "--seed: must be at most 4294967295" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["pretrain-tiny", "--batch-size", "100000"], "must be at most 512"),
        (["pretrain-tiny", "--eval-scenes", "10000000"], "must be at most 10000"),
        (["serve", "--max-sessions", "0"], "must be at least 1"),
        (["serve", "--session-ttl", "nan"], "not a finite number"),
        (["serve", "--file-ttl", "-5"], "must be positive"),
        (["serve", "--video-model-type", "vit_b"], "invalid choice: 'vit_b'"),
        (["pretrain-tiny-sam2", "--stage", "images", "--distill", "-1"], "must be at least 0"),
        (["pretrain-tiny-sam2", "--stage", "images", "--distill", "nan"], "not a finite number"),
    ],
)
def test_more_counts_and_durations_are_bounded(argv, message, capsys) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err
