"""CI check of a `garasam demo` run: every output exists, parses and holds no NaN, for all four models.

    garasam demo --quick --out demo_out && python scripts/check_demo.py demo_out

It prints GaRA's and frozen SAM's degraded IoU but does not require GaRA to win: on the bundled tiny
SAM it does not for point prompts (README, Results), and a check must not assert what we measured
to be false.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

REPORT_FILES = (
    "results.json",
    "results.csv",
    "summary.md",
    "iou_per_degradation.png",
    "gates_gara.png",
    "qualitative_point.png",
    "qualitative_box.png",
)


def check(out: Path) -> list[str]:
    """Problems found in the demo output folder `out` (empty when it passes)."""
    problems = [
        f"missing {out / 'report' / name}" for name in REPORT_FILES if not (out / "report" / name).is_file()
    ]
    if problems:
        return problems
    demo = json.loads((out / "demo.json").read_text())
    results = json.loads((out / "report" / "results.json").read_text())
    with open(out / "report" / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or any(math.isnan(float(r["iou"])) for r in rows):
        problems.append("results.csv is empty or holds NaN")
    for name in ("frozen", "lora16", "lora256", "gara"):
        if name not in results["models"]:
            problems.append(f"results.json has no model {name}")
    degraded = {(r["model"], r["prompt"]): [] for r in rows}
    for row in rows:
        if row["degradation"] != "clean":
            degraded[(row["model"], row["prompt"])].append(float(row["iou"]))
    for prompt in ("point", "box"):
        gara = sum(degraded[("gara", prompt)]) / len(degraded[("gara", prompt)])
        frozen = sum(degraded[("frozen", prompt)]) / len(degraded[("frozen", prompt)])
        verdict = "beats" if gara > frozen else "does not beat"
        print(f"{prompt}: GaRA's degraded IoU {100 * gara:.1f} {verdict} frozen SAM's {100 * frozen:.1f}")
    print(f"demo wall time {demo['wall_time_s']:.0f} s")
    return problems


if __name__ == "__main__":
    found = check(Path(sys.argv[1] if len(sys.argv) > 1 else "demo_out"))
    for problem in found:
        print(f"FAIL: {problem}", file=sys.stderr)
    sys.exit(1 if found else 0)
