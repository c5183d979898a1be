"""The README's walkthrough and the own-data tutorial, typed in order in a fresh folder (issue 20, item 5).

Every ```bash block of the pages in WALKTHROUGHS runs, except those preceded by a `<!-- not run by
tests/test_readme.py: reason -->` comment (the two set-up commands CI runs itself, your-data examples,
the SLURM script, the server). The blocks run as written, each as one bash script, only with fewer
scenes and steps (`SMALLER`), in a temporary folder that holds the repository's `configs/` and
`garasam/` (for its sample images) as a clone would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOT_RUN = "<!-- not run by tests/test_readme.py:"
WALKTHROUGHS = ("README.md", "docs/own-data.md")
# The walkthroughs' sizes, and the CI-sized ones the test uses instead.
SMALLER = {
    "--num 200": "--num 6",
    "--num 20 ": "--num 3 ",
    "--max-steps 200": "--max-steps 2",
    "range(40)": "range(8)",
    "range(1000, 1010)": "range(1000, 1002)",
}


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
    """One string per command: continuation lines and here-documents joined, comments and blank
    lines dropped."""
    joined, pending, heredoc = [], "", False
    for line in block.splitlines():
        if heredoc:
            pending += line + "\n"
            if line == "EOF":
                joined.append(pending)
                pending, heredoc = "", False
            continue
        if "<<'EOF'" in line:
            pending, heredoc = pending + line + "\n", True
            continue
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    return joined


def walkthrough(page: str) -> list[str]:
    return runnable_blocks((ROOT / page).read_text())


@pytest.mark.parametrize("page", WALKTHROUGHS)
def test_the_walkthrough_is_found(page: str) -> None:
    found = [c for block in walkthrough(page) for c in commands(block)]
    assert len(found) >= 4 and all(c.startswith(("garasam ", "python - <<")) for c in found), found
    text = "\n".join(found)
    assert "make demo" not in text and "/data/" not in text and "torchrun" not in text and "vit_b" not in text


def test_every_shortcut_applies() -> None:
    text = "\n".join(block for page in WALKTHROUGHS for block in walkthrough(page))
    for long in SMALLER:
        assert long in text, f"{long!r} is no longer in the walkthroughs: update SMALLER"


@pytest.mark.slow
@pytest.mark.parametrize("page", WALKTHROUGHS)
def test_the_walkthrough_runs_verbatim(page: str, tmp_path: Path) -> None:
    for name in ("configs", "garasam"):
        (tmp_path / name).symlink_to(ROOT / name)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "2",
        "PYTHONWARNINGS": "ignore",
    }
    for block in walkthrough(page):
        for long, short in SMALLER.items():
            block = block.replace(long, short)
        done = subprocess.run(
            ["bash", "-e", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"{block}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    expected = {
        "README.md": [
            "report/summary.md",
            "report_disk/summary.md",
            "masks/coffee.json",
            "masks_auto/coffee.json",
        ],
        "docs/own-data.md": [
            "my_report/summary.md",
            "my_report_degraded/summary.md",
            "my_masks/results.json",
        ],
    }
    for name in expected[page]:
        assert (tmp_path / name).is_file(), name
