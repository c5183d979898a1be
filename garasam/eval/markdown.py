"""Markdown tables, shared by the evaluation report, the paper comparison and the oracle report."""

from __future__ import annotations


def table(header: list[str], rows: list[list[str]], text_columns: int = 1) -> list[str]:
    """A markdown table; the first `text_columns` columns are left-aligned, the numbers right-aligned."""
    rule = ["---" if i < text_columns else "---:" for i in range(len(header))]
    return [f"| {' | '.join(line)} |" for line in (header, rule, *rows)]
