"""CI check of a `garasam demo --video` run: every output exists and parses, every J&F has a finite
95% interval around it, every claim has a verdict.

    garasam demo --video --quick --out video_demo_out && python scripts/check_video_demo.py video_demo_out

It prints the claims' verdicts but never requires one: a check must not assert what a measurement
decides.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

REPORT_FILES = ("results.json", "summary.md", "jf_semi.png", "jf_clicks.png")
ARMS = ("frozen", "gara_enc", "gara_enc_mem")
VERDICTS = ("holds", "does not hold", "within noise", "not measured")


def check(out: Path) -> list[str]:
    """Problems found in the video demo's output folder `out` (empty when it passes)."""
    problems = []
    for test_set in ("seen", "zero_shot"):
        folder = out / "eval" / test_set
        problems += [f"missing {folder / name}" for name in REPORT_FILES if not (folder / name).is_file()]
    problems += [f"missing {out / name}" for name in ("study.json", "demo.md") if not (out / name).is_file()]
    if problems:
        return problems
    summary = json.loads((out / "study.json").read_text())
    for test_set in ("seen", "zero_shot"):
        for protocol in ("semi", "clicks"):
            arms = summary["estimates"].get(f"{test_set}/{protocol}", {})
            for arm in ARMS:
                for statistic in ("clear", "degrade"):
                    est = arms.get(arm, {}).get(statistic)
                    where = f"{test_set}/{protocol}/{arm}/{statistic}"
                    if est is None or not all(math.isfinite(est[k]) for k in ("value", "low", "high")):
                        problems.append(f"{where}: no finite J&F estimate")
                    elif not est["low"] <= est["value"] <= est["high"]:
                        problems.append(f"{where}: {est} outside its interval")
    if "[" not in (out / "demo.md").read_text():
        problems.append("demo.md has no intervals")
    for claim in summary["claims"]:
        verdict = claim["verdict"].split(" (")[0]
        if verdict not in VERDICTS:
            problems.append(f"claim without a verdict: {claim['claim']}")
        print(f"[{claim['verdict']}] ({claim['claim']}) {claim['text']}")
    print(f"video demo wall time {summary['wall_time_s']:.0f} s")
    return problems


if __name__ == "__main__":
    found = check(Path(sys.argv[1] if len(sys.argv) > 1 else "video_demo_out"))
    for problem in found:
        print(f"FAIL: {problem}", file=sys.stderr)
    sys.exit(1 if found else 0)
