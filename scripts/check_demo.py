"""CI check of a `garasam demo` run: every output exists and parses, every number has a finite 95%
interval around it, every claim has a verdict.

    garasam demo --quick --out demo_out && python scripts/check_demo.py demo_out

It prints the claims' verdicts but never requires one: a check must not assert what a measurement
decides (README, Results).
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
    "objects.csv",
    "summary.md",
    "iou_per_degradation.png",
    "gates_gara_s0.png",
    "qualitative_point.png",
    "qualitative_box.png",
)
MODELS = ("frozen", "lora128@s0", "gara@s0")
ARMS = ("frozen", "lora128", "gara")
VERDICTS = ("holds", "does not hold", "within noise", "not measured")


def check(out: Path) -> list[str]:
    """Problems found in the demo output folder `out` (empty when it passes)."""
    problems = []
    for test_set in ("seen", "zero_shot"):
        folder = out / "eval" / test_set
        problems += [f"missing {folder / name}" for name in REPORT_FILES if not (folder / name).is_file()]
    for name in ("study.json", "demo.md"):
        if not (out / name).is_file():
            problems.append(f"missing {out / name}")
    if problems:
        return problems
    summary = json.loads((out / "study.json").read_text())
    for test_set in ("seen", "zero_shot"):
        folder = out / "eval" / test_set
        results = json.loads((folder / "results.json").read_text())
        if list(results["models"]) != list(MODELS):
            problems.append(
                f"{folder}/results.json: models {list(results['models'])}, expected {list(MODELS)}"
            )
        with open(folder / "objects.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        if not rows or any(math.isnan(float(r["iou"])) for r in rows):
            problems.append(f"{folder}/objects.csv is empty or holds NaN")
        for prompt in ("point", "box"):
            arms = summary["estimates"][test_set][prompt]["arms"]
            for arm in ARMS:
                for key in ("iou_clear", "iou_degrade", "dice_clear", "dice_degrade"):
                    est = arms.get(arm, {}).get(key)
                    if est is None or not all(math.isfinite(est[k]) for k in ("value", "low", "high")):
                        problems.append(f"{test_set}/{prompt}/{arm}: no finite {key} estimate")
                    elif not est["low"] <= est["value"] <= est["high"]:
                        problems.append(f"{test_set}/{prompt}/{arm}: {key} {est} outside its interval")
    if "[" not in (out / "demo.md").read_text():
        problems.append("demo.md has no intervals")
    for claim in summary["claims"]:
        if claim["verdict"] not in VERDICTS:
            problems.append(f"claim without a verdict: {claim['claim']}")
        print(f"[{claim['verdict']}] {claim['claim']}")
    print(f"demo wall time {summary['wall_time_s']:.0f} s")
    return problems


if __name__ == "__main__":
    found = check(Path(sys.argv[1] if len(sys.argv) > 1 else "demo_out"))
    for problem in found:
        print(f"FAIL: {problem}", file=sys.stderr)
    sys.exit(1 if found else 0)
