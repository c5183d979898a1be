"""Output folders owned by one writer: checked before the work starts, locked while it runs.

Two `garasam train` runs into one `--out` (a requeued cluster job while the old one is alive) would
interleave logs and overwrite each other's checkpoints. Each writing command claims its folder: the
folder must take a file and have room, and a lock file (`.garasam.lock`, an exclusive `flock`)
refuses a second live writer by name. The kernel drops the lock when its process dies, so a lock
left by a crash or a kill never blocks the next run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from garasam.errors import BusyError, ConfigError, DataError, WriteError
from garasam.io import atomic_write_text, check_writable

LOCK_NAME = ".garasam.lock"

_held: dict[Path, int] = {}  # lock file -> nesting depth, so a command may claim a folder it runs in


@contextlib.contextmanager
def claim_output(
    folder: str | os.PathLike, command: str, lock_name: str = LOCK_NAME, writer: bool = True
) -> Iterator[Path]:
    """Check that `folder` can be written, then hold its lock for the block (`writer=False`: a
    process of a distributed run that writes nothing, which claims nothing).

    A folder this call created and that is still empty when the block fails is removed again, so a
    refused or mistyped command leaves nothing behind."""
    folder = Path(folder)
    if not writer:
        yield folder
        return
    created = not folder.exists()
    try:
        check_writable(folder)
        with folder_lock(folder / lock_name, command):
            yield folder
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty
        raise


@contextlib.contextmanager
def folder_lock(path: Path, command: str) -> Iterator[None]:
    """Hold the exclusive lock `path` for the block, or raise BusyError naming its live holder."""
    key = path.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    fd = _acquire(path, command)
    _held[key] = 1
    try:
        yield
    finally:
        del _held[key]
        with contextlib.suppress(OSError):
            path.unlink()  # while still held: a waiting process then sees a different file and retries
        os.close(fd)


def _acquire(path: Path, command: str) -> int:
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as err:
            raise WriteError(f"cannot write {path}: {err.strerror or err}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(fd)
            os.close(fd)
            raise BusyError(
                f"{path.parent} is being written by another garasam process ({holder}); wait for it "
                "to finish or stop it, or choose another output folder"
            ) from None
        except OSError as err:  # a filesystem without locks: run unguarded rather than not at all
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                os.close(fd)
                raise
            return fd
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                _describe_self(fd, command)
                return fd
        os.close(fd)  # the holder removed the file as we locked it: lock the new one


def _describe_self(fd: int, command: str) -> None:
    record = {
        "command": command,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)


def _describe_holder(fd: int) -> str:
    try:
        record = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return (
            f"garasam {record['command']}, pid {record['pid']} on {record['host']}, since {record['since']}"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return "its description is unreadable"


def pin_settings(
    folder: str | os.PathLike, file_name: str, settings: dict[str, Any], keys: Sequence[str] | None = None
) -> None:
    """The first run into `folder` records its settings in `file_name`; a later run (a resume) must
    have the same ones (every key, or only `keys`), as resuming with others would mix two runs."""
    folder = Path(folder)
    path = folder / file_name
    settings = json.loads(json.dumps(settings))  # as it reads back (tuples become lists)
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(settings, indent=2) + "\n")
        return
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: unreadable settings of an earlier run ({err})") from None
    if not isinstance(previous, dict):
        raise DataError(f"{path}: the settings of an earlier run are not a JSON object")
    for key in keys if keys is not None else sorted(set(previous) | set(settings)):
        if previous.get(key) != settings.get(key):
            raise ConfigError(
                f"{folder} holds a run with {key}={previous.get(key)!r}, this run has {settings.get(key)!r}; "
                "use another --out, or the same settings to resume"
            )
