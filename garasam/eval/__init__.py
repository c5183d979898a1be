"""Robustness evaluation: the benchmark protocol, metrics, reports, plots and qualitative sheets.

    results = evaluate({"frozen": sam, "gara": gara_sam}, open_dataset("robustseg:data/test"))
    write_report(results, "runs/eval")

Imported lazily so that `garasam eval --help` starts fast.
"""

from __future__ import annotations

from garasam.lazy import lazy_exports

_EXPORTS = {
    "evaluate": "garasam.eval.protocol",
    "Results": "garasam.eval.protocol",
    "Condition": "garasam.eval.protocol",
    "plan_conditions": "garasam.eval.protocol",
    "predict_masks": "garasam.eval.protocol",
    "write_report": "garasam.eval.report",
    "mask_metrics": "garasam.eval.metrics",
    "mask_boundary": "garasam.eval.metrics",
    "boundary_width": "garasam.eval.metrics",
}

__all__ = list(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS)
