"""Run monitoring on rank 0: a tqdm bar, a JSONL event log and TensorBoard scalars.

The JSONL log and TensorBoard's event files are append-only streams, not rewritten files, so they
are appended and flushed rather than written through `atomic_path`: a crash can at worst cut the
last line short, which `read_log` skips. A resumed run appends to the same log; TensorBoard's
`purge_step` drops the events a crashed run wrote after its last checkpoint.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from garasam.io import disk_refusal

LOG_NAME = "log.jsonl"
TB_DIR = "tb"


class Monitor:
    """Everything a run reports; all methods are no-ops on ranks other than 0."""

    def __init__(
        self,
        output: Path,
        enabled: bool,
        total_steps: int,
        start_step: int,
        tensorboard: bool,
        progress: bool,
    ) -> None:
        self.enabled = enabled
        self._log = None
        self._tb = None
        self._bar = None
        if not enabled:
            return
        output.mkdir(parents=True, exist_ok=True)
        self._log = open(output / LOG_NAME, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(output / TB_DIR), purge_step=start_step or None)
        if progress:
            self._bar = tqdm(
                total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True
            )

    def event(self, kind: str, **fields: Any) -> None:
        """One JSON line: `{"event": kind, "time": ..., **fields}`."""
        if self._log is None:
            return
        record = {
            "event": kind,
            "time": round(time.time(), 3),
            **{k: _jsonable(v) for k, v in fields.items()},
        }
        try:
            self._log.write(json.dumps(record) + "\n")
            self._log.flush()
        except OSError as err:
            raise disk_refusal(self._log.name, err) or err from None

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self._tb is None:
            return
        for name, value in values.items():
            if value is not None and math.isfinite(value):
                self._tb.add_scalar(name, value, step)

    def advance(self, steps: int = 1, **postfix: Any) -> None:
        if self._bar is None:
            return
        self._bar.update(steps)
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)

    def write(self, message: str) -> None:
        """A line for the user, printed above the progress bar (rank 0 only)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(message)
        else:
            print(message, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._tb is not None:
            self._tb.close()
        if self._log is not None:
            self._log.close()
        self._bar = self._tb = self._log = None


def read_log(path: Path) -> list[dict[str, Any]]:
    """Parse a log.jsonl, skipping a line cut short by a crash."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
