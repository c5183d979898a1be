"""Output folders: one live writer at a time, a crashed writer's lock free (issue 29, item 4)."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from garasam.errors import BusyError, WriteError
from garasam.outputs import LOCK_NAME, claim_output

HOLD = """
import sys, time
from pathlib import Path
from garasam.outputs import claim_output
with claim_output(Path(sys.argv[1]), sys.argv[2], lock_name=sys.argv[3]):
    print("held", flush=True)
    time.sleep(600)
"""


@contextlib.contextmanager
def held_elsewhere(folder: Path, command: str = "train", lock_name: str = LOCK_NAME) -> Iterator[int]:
    """`folder` claimed by another live process (its pid yielded); killed afterwards, as a crash is."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), command, lock_name], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "held"
        yield process.pid
    finally:
        process.kill()
        process.wait()


def test_a_second_writer_is_refused_by_name(tmp_path: Path) -> None:
    with held_elsewhere(tmp_path / "run") as pid:
        busy = rf"run is being written by another garasam process \(garasam train, pid {pid} on "
        with pytest.raises(BusyError, match=busy), claim_output(tmp_path / "run", "eval"):
            pass


def test_a_crashed_writers_lock_does_not_block(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path), "train", LOCK_NAME], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "held"
    os.kill(process.pid, signal.SIGKILL)  # no cleanup runs: the lock file stays behind
    process.wait()
    assert (tmp_path / LOCK_NAME).exists()
    with claim_output(tmp_path, "train"):
        assert str(os.getpid()) in (tmp_path / LOCK_NAME).read_text()
    assert not (tmp_path / LOCK_NAME).exists()  # released: the folder holds only what the run wrote


def test_one_process_may_claim_a_folder_it_already_holds(tmp_path: Path) -> None:
    with claim_output(tmp_path, "demo"), claim_output(tmp_path, "train"):
        pass
    with claim_output(tmp_path, "eval"):  # and the lock is free again afterwards
        pass


def test_a_failed_claim_leaves_no_new_folder_and_keeps_an_old_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError), claim_output(tmp_path / "new", "eval"):
        raise ValueError("refused after the claim")
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "keep.txt").write_text("x")
    with pytest.raises(ValueError), claim_output(tmp_path / "old", "eval"):
        raise ValueError("refused")
    assert [p.name for p in (tmp_path / "old").iterdir()] == ["keep.txt"]


def test_a_file_in_place_of_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("x")
    with pytest.raises(WriteError, match="is a file, not a folder"), claim_output(tmp_path / "out", "eval"):
        pass


def test_other_ranks_claim_nothing(tmp_path: Path) -> None:
    with held_elsewhere(tmp_path), claim_output(tmp_path, "train", writer=False):
        pass  # a distributed run's other processes write nothing and need no lock


# -- every command that writes a folder claims it ------------------------------------------------------
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from garasam.data.synthetic import write_scenes
    from tests.eval.test_oracle import _write

    root = tmp_path_factory.mktemp("inputs")
    write_scenes(root / "scenes", 2, seed=0, size=(64, 64))
    return {
        "data": f"robustseg:{root / 'scenes'}",
        "image": str(next((root / "scenes" / "clear").iterdir())),
        "objects": str(_write(root / "objects.csv", ("a", "b"))),
    }


WRITERS = {
    "synth": lambda i, out: ["synth", "--out", out, "--num", "1", "--size", "32"],
    "corrupt": lambda i, out: ["corrupt", "--data", i["data"], "--only", "brightness", "--out", out],
    "prepare": lambda i, out: ["prepare", "robust-seg", "--src", i["image"], "--out", out],
    "train": lambda i, out: (
        ["train", "--config", str(ROOT / "configs/tiny_gara.yaml"), "--data", i["data"]]
        + ["--out", out, "--max-steps", "1", "--device", "cpu"]
    ),
    "eval": lambda i, out: [
        "eval",
        "--data",
        i["data"],
        "--model",
        "frozen=none",
        "--out",
        out,
        "--device",
        "cpu",
    ],
    "predict": lambda i, out: ["predict", i["image"], "--box", "1,1,30,30", "--out", out, "--device", "cpu"],
    "oracle": lambda i, out: ["oracle", i["objects"], "--out", out],
    "demo": lambda i, out: ["demo", "--quick", "--out", out, "--device", "cpu"],
    "study": lambda i, out: ["study", "--quick", "--out", out, "--device", "cpu"],
    "export": lambda i, out: ["export", "--format", "onnx", "--out", out],
}


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_every_writing_command_refuses_a_folder_in_use(command, inputs, tmp_path, capsys) -> None:
    from garasam.cli import main

    out = tmp_path / "out"
    with held_elsewhere(out) as pid:
        assert main(WRITERS[command](inputs, str(out))) == 2
    error = capsys.readouterr().err
    assert f"{out} is being written by another garasam process (garasam train, pid {pid} " in error
    assert [p.name for p in out.iterdir()] == [LOCK_NAME]  # nothing written beside the holder's lock


def test_pretrain_tiny_refuses_a_weights_file_in_use(tmp_path, capsys) -> None:
    from garasam.cli import main

    out = tmp_path / "tiny.safetensors"
    with held_elsewhere(tmp_path, "pretrain-tiny", lock_name=".tiny.safetensors.lock"):
        assert main(["pretrain-tiny", "--out", str(out), "--max-steps", "1", "--device", "cpu"]) == 2
    assert "is being written by another garasam process (garasam pretrain-tiny" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS])
def test_a_filesystem_without_locks_runs_unguarded(code, tmp_path, monkeypatch) -> None:
    """NFS without lockd (ENOLCK), filesystems without flock (EOPNOTSUPP), Lustre without -o flock
    (ENOSYS): the command runs rather than failing for want of a lock."""
    import fcntl

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with claim_output(tmp_path / "run", "train"):
        assert (tmp_path / "run").is_dir()
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_pin_settings_records_once_and_refuses_other_settings(tmp_path) -> None:
    from garasam.errors import ConfigError, DataError
    from garasam.outputs import pin_settings

    out = tmp_path / "run"
    pin_settings(out, "settings.json", {"seed": 1, "suite": "robustseg", "data": "a"})
    pin_settings(out, "settings.json", {"seed": 1, "suite": "robustseg", "data": "a"})  # a resume
    pin_settings(out, "settings.json", {"seed": 1, "suite": "robustseg", "data": "b"}, keys=("seed", "suite"))
    with pytest.raises(ConfigError, match=r"holds a run with seed=1, this run has 2"):
        pin_settings(out, "settings.json", {"seed": 2, "suite": "robustseg", "data": "a"})
    with pytest.raises(ConfigError, match=r"data='a', this run has 'b'"):
        pin_settings(out, "settings.json", {"seed": 1, "suite": "robustseg", "data": "b"})
    (out / "settings.json").write_text("{ not json")
    with pytest.raises(DataError, match=r"settings.json: unreadable settings of an earlier run"):
        pin_settings(out, "settings.json", {"seed": 1})
    (out / "settings.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="not a JSON object"):
        pin_settings(out, "settings.json", {"seed": 1})
