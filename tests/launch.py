"""`garasam` under torchrun for the distributed-training tests: two CPU processes (gloo)."""

from __future__ import annotations

import os
import subprocess
import sys


def torchrun_garasam(*args: str, processes: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `garasam ARGS` in `processes` processes on one machine; fails the test unless it exits 0."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "garasam.cli",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result
