"""garasam.io: atomic writes (issue 29, item 3: every file came out 0600 whatever the umask)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from garasam.io import atomic_write_bytes, atomic_write_text


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
