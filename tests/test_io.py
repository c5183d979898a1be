"""garasam.io: atomic writes (issue 29, item 3: every file came out 0600 whatever the umask), and
the disk refusing a write named with the file and the cause (items 2 and 5)."""

from __future__ import annotations

import errno
import os
import shutil
import stat
from pathlib import Path

import pytest
from safetensors import safe_open

from garasam.errors import WriteError
from garasam.io import atomic_path, atomic_write_bytes, atomic_write_text, check_writable, save_safetensors


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_get_the_mode_the_umask_gives(umask: int, mode: int, tmp_path: Path) -> None:
    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_write_bytes(tmp_path / "sub" / "b.bin", b"y")
    finally:
        os.umask(previous)
    for path in (tmp_path / "a.txt", tmp_path / "sub" / "b.bin"):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    assert (tmp_path / "a.txt").read_text() == "x" and not list(tmp_path.glob(".*.tmp"))


# -- the disk refusing a write (issue 29, items 2 and 5) -----------------------------------------------
# The writers' own words when the disk is full, measured on a 1 MiB tmpfs (torch 2.13, NumPy 2,
# safetensors 0.6): NumPy and torch hide the errno, so garasam asks the disk why.
SHORT_WRITES = [
    OSError("393216 requested and 139136 written"),
    RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"),
    RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"),
]


def full_disk(monkeypatch: pytest.MonkeyPatch, free: int = 4096) -> None:
    """What shutil.disk_usage says of a full disk (as root, a test cannot fill or lock one)."""
    usage = shutil.disk_usage("/")
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage._replace(free=free))


def fsync_fails(monkeypatch: pytest.MonkeyPatch, root: Path, code: int = errno.ENOSPC) -> None:
    """fsync of any file under `root` fails with `code`, as a full or failing disk reports it."""
    real = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(root)):
            raise OSError(code, os.strerror(code))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT])
def test_a_refused_write_names_the_file_and_keeps_the_old_one(code, tmp_path, monkeypatch) -> None:
    target = tmp_path / "results.json"
    atomic_write_text(target, "old")
    fsync_fails(monkeypatch, tmp_path, code)
    with pytest.raises(WriteError, match=f"cannot write {target}: {os.strerror(code)}"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old" and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("error", SHORT_WRITES, ids=["numpy", "torch", "safetensors"])
def test_a_short_write_on_a_full_disk_is_called_so(error, tmp_path, monkeypatch) -> None:
    full_disk(monkeypatch)
    refused = pytest.raises(WriteError, match="cannot write .*state.pt: No space left on device")
    with refused, atomic_path(tmp_path / "state.pt"):
        raise error
    assert not list(tmp_path.iterdir())


def test_errors_that_are_not_the_disk_pass_through(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a bug"), atomic_path(tmp_path / "a"):
        raise ValueError("a bug")
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "a"):
        raise FileNotFoundError(errno.ENOENT, "no such input", "input.png")
    with pytest.raises(RuntimeError, match="shape mismatch"), atomic_path(tmp_path / "a"):
        raise RuntimeError("shape mismatch")


def test_a_file_where_the_folder_should_be_is_named(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file")
    with pytest.raises(
        WriteError,
        match=f"cannot write {tmp_path / 'out' / 'a.json'}: {tmp_path / 'out'} is a file, not a folder",
    ):
        atomic_write_text(tmp_path / "out" / "a.json", "{}")


def test_check_writable_creates_the_folder(tmp_path: Path) -> None:
    assert check_writable(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir() and not list((tmp_path / "a" / "b").iterdir())


def test_check_writable_refuses_a_file_a_full_disk_and_a_refusing_one(tmp_path, monkeypatch) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(
        WriteError, match=f"in {tmp_path / 'file'}: {tmp_path / 'file'} is a file, not a folder"
    ):
        check_writable(tmp_path / "file")
    with pytest.raises(WriteError, match=f"{tmp_path / 'file'} is a file, not a folder"):
        check_writable(tmp_path / "file" / "sub")
    fsync_fails(monkeypatch, tmp_path, errno.EROFS)
    with pytest.raises(WriteError, match=f"cannot write in {tmp_path / 'ro'}: Read-only file system"):
        check_writable(tmp_path / "ro")
    monkeypatch.undo()
    full_disk(monkeypatch, free=5 * 2**20)
    with pytest.raises(WriteError, match="only 5.0 MiB free on its disk"):
        check_writable(tmp_path / "full")


def test_safetensors_files_are_the_same_bytes_on_every_save(tmp_path: Path) -> None:
    """Issue 29, reproducibility: the demo's adapters held identical tensors but differed as files,
    because safetensors orders its metadata by a per-map random hash (two orders in 16 saves here)."""
    import torch
    from safetensors.torch import load_file

    tensors = {"b": torch.arange(6.0).reshape(2, 3), "a": torch.ones(4, dtype=torch.bfloat16)}
    metadata = {"format": "pt", "garasam_adapter_type": "gara", "zz": "last"}
    digests = {save_safetensors(tensors, tmp_path / f"{i}.safetensors", metadata) for i in range(16)}
    assert len(digests) == 1 and len({(tmp_path / f"{i}.safetensors").read_bytes() for i in range(16)}) == 1
    loaded = load_file(tmp_path / "0.safetensors")
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
    with safe_open(tmp_path / "0.safetensors", "pt") as handle:
        assert handle.metadata() == metadata
