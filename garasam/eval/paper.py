"""The paper's published numbers, and which of them each evaluated model stands beside.

`garasam eval --paper TABLE` adds a section to `summary.md`: for every model of the run, its numbers
next to the paper's for the method it is (SAM, HQ-SAM, RobustSAM, GaRA-SAM, LoRA-r, MoE-LoRA), told
from its backbone family and adapters. The user names the table because only the user knows that the
evaluated images are that table's test set. The numbers are those our reference records
(`shared/reference/gara-sam.md`, section 6); cells it does not record stay empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# (prompt, split): split "degr" = mean over the synthetic degradations, "clear" = the images as given
Cell = tuple[str, str]


@dataclass(frozen=True)
class PaperTable:
    """One of the paper's result tables: IoU % per method and (prompt, split)."""

    title: str
    encoder: str  # the backbone the paper used for it
    cells: tuple[Cell, ...]
    rows: Mapping[str, Mapping[Cell, float]] = field(default_factory=dict)
    note: str = ""


_TABLE1_CELLS: tuple[Cell, ...] = (("point", "degr"), ("point", "clear"), ("box", "degr"), ("box", "clear"))


def _row(*values: float | None, cells: tuple[Cell, ...] = _TABLE1_CELLS) -> dict[Cell, float]:
    return {cell: value for cell, value in zip(cells, values, strict=True) if value is not None}


def _real_table(dataset: str, *, sam: float, robust: float, gara: float, gara_real: float) -> PaperTable:
    """The paper's real-degradation table for one test set: ViT-L, box prompt, the images as they are."""
    cell = ("box", "clear")
    return PaperTable(
        f"Real degradations: ViT-L, {dataset}, box IoU %",
        "vit_l",
        (cell,),
        {"SAM": {cell: sam}, "RobustSAM": {cell: robust}, "GaRA-SAM": {cell: gara}},
        "The real-degradation sets are scored as they are (`--suite none`): the paper's number stands "
        f"beside our Clear column. The paper's GaRA-SAM-Real (trained on real data) reaches {gara_real}.",
    )


PAPER_TABLES: dict[str, PaperTable] = {
    "lvis": PaperTable(
        "Table 1: ViT-B, LVIS (seen), IoU %",
        "vit_b",
        _TABLE1_CELLS,
        {
            "SAM": _row(65.0, 70.1, 75.5, 78.4),
            "HQ-SAM": _row(69.5, 76.0, 79.0, 83.1),
            "RobustSAM": _row(72.7, 77.2, 81.5, 84.3),
            "GaRA-SAM": _row(77.0, 81.3, 83.7, 86.1),
            "LoRA-16": _row(75.0, 79.4, None, None),
            "LoRA-128": _row(75.6, 80.6, None, None),
            "LoRA-256": _row(73.4, 78.5, None, None),
            "MoE-LoRA": _row(76.4, 79.7, None, None),
        },
        "The LoRA and MoE-LoRA rows are the paper's LoRA-versus-GaRA comparison (point prompt only; its "
        "MoE-LoRA has experts 16, 128, 256).",
    ),
    "bdd_lis": _real_table("BDD-100K + LIS", sam=74.3, robust=78.1, gara=80.0, gara_real=89.7),
    "acdc": _real_table("ACDC", sam=65.9, robust=67.5, gara=71.6, gara_real=88.8),
}

_FAMILY_METHODS = {"sam": "SAM", "hq": "HQ-SAM", "robust": "RobustSAM"}  # the families the paper evaluated


def paper_method(identity: Mapping[str, Any]) -> str | None:
    """The paper's name for a model (`Results.models` entry): its backbone family without adapters,
    GaRA-SAM / LoRA-r / MoE-LoRA for adapters on SAM; None for what the paper did not evaluate
    (SAM 2.1, adapters on HQ-SAM or RobustSAM, an unknown backbone)."""
    from garasam.models.registry import family_of  # transformers: imported when a report is written

    model_type = (identity.get("backbone") or {}).get("model_type")
    if not isinstance(model_type, str) or model_type == "custom":
        return None
    adapter = identity.get("adapter")
    family = family_of(model_type)
    if adapter is None:
        return _FAMILY_METHODS.get(family)  # SAM 2.1: not in the paper
    if family != "sam":
        return None
    kind = adapter.get("adapter_type")
    if kind == "gara":
        return "GaRA-SAM"
    if kind == "lora":
        return f"LoRA-{adapter.get('r')}"
    return "MoE-LoRA" if kind == "moe_lora" else None


def paper_comparison(table_name: str, models: Mapping[str, Mapping[str, Any]], ours: Any) -> list[str]:
    """Markdown lines: each model's IoU beside the paper's for its method.

    `ours(model, prompt, split)` returns our IoU % as text (or "-").
    """
    from garasam.eval.markdown import table
    from garasam.models.registry import encoder_of

    paper = PAPER_TABLES[table_name]
    header = ["model", "paper row"]
    for prompt, split in paper.cells:
        header += [f"{prompt} {split} ours", f"{prompt} {split} paper"]
    rows = []
    for name, identity in models.items():
        method = paper_method(identity)
        published = paper.rows.get(method or "", {})
        row = [name, method if method in paper.rows else "-"]
        for cell in paper.cells:
            value = published.get(cell)
            row += [ours(name, *cell), "-" if value is None else f"{value:.1f}"]
        rows.append(row)
    lines = [f"## Beside the paper: {paper.title}", ""]
    lines += table(header, rows, text_columns=2)
    others = [
        name
        for name, identity in models.items()
        if encoder_of(str((identity.get("backbone") or {}).get("model_type"))) != paper.encoder
    ]
    notes = [paper.note] if paper.note else []
    if others:
        notes.append(
            f"{', '.join(others)}: not the paper's backbone for this table ({paper.encoder}); the numbers "
            "are not comparable."
        )
    notes.append(
        "The paper row is told from each model's backbone family and adapters; the test set is the one "
        "`--paper` names, which only you can vouch for."
    )
    return [*lines, "", *notes]
