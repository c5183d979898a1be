"""The README's walkthrough, typed in order in a fresh folder (issue 20, item 5).

Every ```bash block of README.md runs, except those preceded by a `<!-- not run by tests/test_readme.py:
reason -->` comment (the two set-up commands CI runs itself, your-data examples, the SLURM script, the
server). The blocks run as written, only with fewer scenes and steps (`SMALLER`), in a temporary folder
that holds the repository's `configs/` and `garasam/` (for its sample images) as a clone would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOT_RUN = "<!-- not run by tests/test_readme.py:"
# The walkthrough's sizes, and the CI-sized ones the test uses instead.
SMALLER = {"--num 200": "--num 6", "--num 20 ": "--num 3 ", "--max-steps 200": "--max-steps 2"}


def runnable_blocks(text: str) -> list[str]:
    """The ```bash blocks of `text` not marked as not run."""
    blocks, current, marked, previous = [], None, False, ""
    for line in text.splitlines():
        if current is None:
            if line.strip() == "```bash":
                current, marked = [], previous.startswith(NOT_RUN)
            elif line.strip():
                previous = line.strip()
        elif line.strip() == "```":
            if not marked:
                blocks.append("\n".join(current))
            current, previous = None, ""
        else:
            current.append(line)
    return blocks


def commands(block: str) -> list[str]:
    """One string per command: continuation lines joined, comments and blank lines dropped."""
    joined, pending = [], ""
    for line in block.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    return joined


def walkthrough() -> list[str]:
    return [c for block in runnable_blocks((ROOT / "README.md").read_text()) for c in commands(block)]


def test_the_walkthrough_is_found_and_every_shortcut_applies() -> None:
    found = walkthrough()
    assert len(found) >= 8 and all(c.startswith("garasam ") for c in found), found
    text = "\n".join(found)
    for long in SMALLER:
        assert long in text, f"{long!r} is no longer in the README: update SMALLER"
    assert "make demo" not in text and "/data/" not in text and "torchrun" not in text


@pytest.mark.slow
def test_the_readme_walkthrough_runs_verbatim(tmp_path: Path) -> None:
    for name in ("configs", "garasam"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "2",
        "PYTHONWARNINGS": "ignore",
    }
    for command in walkthrough():
        for long, short in SMALLER.items():
            command = command.replace(long, short)
        done = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert (tmp_path / "report" / "summary.md").is_file() and (
        tmp_path / "report_disk" / "summary.md"
    ).is_file()
    assert (tmp_path / "masks" / "coffee.json").is_file() and (
        tmp_path / "masks_auto" / "coffee.json"
    ).is_file()
