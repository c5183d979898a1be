"""Outputs: results.json / results.csv / summary.md parse, hold no NaN, and have the expected layout."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from garasam.adapters import GaRAConfig, inject_adapters
from garasam.eval.metrics import METRICS
from garasam.eval.protocol import evaluate
from garasam.eval.qualitative import object_colour, overlay
from garasam.eval.report import write_report
from tests.eval.conftest import DEGRADATIONS, scenes, tiny_sam


def _reject_nan(token: str) -> float:
    raise AssertionError(f"results.json contains {token}")


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Every table of a markdown text as rows of cells (header first, rule row dropped)."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            if not all(set(cell) <= set("-:") for cell in cells):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, object]:
    frozen = tiny_sam()
    gara = inject_adapters(copy.deepcopy(frozen), GaRAConfig(r_low=4, r_high=16))
    results = evaluate(
        {"frozen": frozen, "gara": gara},
        scenes(2),
        "robustseg",
        degradations=DEGRADATIONS,
        examples=1,
        progress=False,
    )
    out = tmp_path_factory.mktemp("report")
    written = write_report(results, out)
    assert all(path.is_file() for path in written)
    return out, results


def test_results_json_has_every_number_config_identity_and_versions(report) -> None:
    out, results = report
    data = json.loads((out / "results.json").read_text(), parse_constant=_reject_nan)
    assert data["config"]["suite"] == "robustseg" and data["config"]["seed"] == 0
    assert data["config"]["degradations"] == list(DEGRADATIONS)
    assert data["models"]["frozen"]["adapter"] is None
    assert data["models"]["gara"]["adapter"]["adapter_type"] == "gara"
    assert data["models"]["gara"]["backbone"]["model_type"] == "tiny"
    assert {"torch", "transformers", "numpy", "garasam", "python"} <= set(data["versions"])
    assert len(data["results"]) == 2 * 3 * 2  # models x conditions x prompts
    box = data["summary"]["gara"]["box"]
    objects = sum(len(sample.masks) for sample in scenes(2))
    assert box["clear"]["count"] == objects and box["degrade"]["count"] == 2 * objects
    assert box["degrade"]["iou"] == pytest.approx(results.degrade("gara", "box")["iou"])
    assert set(box["per_degradation"]) == set(DEGRADATIONS)
    ap = box["average_precision"]
    assert 0.0 <= ap["clear"] <= 1.0 and 0.0 <= ap["degrade"] <= 1.0
    gates = [g for g in data["gates"] if g["model"] == "gara"]
    assert len(gates) == 6 * 3 and not [g for g in data["gates"] if g["model"] == "frozen"]


def test_results_csv_has_one_row_per_model_condition_and_prompt(report) -> None:
    out, results = report
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["model", "dataset", "degradation", "severity", "prompt", *METRICS, "count"]
    assert len(rows) == 12
    keys = {(r["model"], r["degradation"], r["severity"], r["prompt"]) for r in rows}
    assert ("gara", "elastic_transform", "1", "point") in keys and ("frozen", "clean", "0", "box") in keys
    for row in rows:
        assert 0.0 <= float(row["iou"]) <= 1.0 and int(row["count"]) > 0
        assert all(row[m] not in ("", "nan", "NaN") for m in METRICS)


def test_summary_has_the_paper_layout_and_a_per_degradation_table(report) -> None:
    out, results = report
    tables = markdown_tables((out / "summary.md").read_text())
    headline, _, per_degradation, ap, models = tables
    assert headline[0] == [
        "model",
        *(
            f"{p} {split} {m}"
            for p in ("point", "box")
            for split in ("degr", "clear")
            for m in ("IoU", "Dice")
        ),
    ]
    assert [row[0] for row in headline[1:]] == ["frozen", "gara"]
    clear_iou = float(headline[1][3])
    assert clear_iou == pytest.approx(100 * results.clear("frozen", "point")["iou"], abs=0.05)
    assert per_degradation[0] == ["degradation", "frozen point", "frozen box", "gara point", "gara box"]
    assert [row[0] for row in per_degradation[1:]] == ["clean", *DEGRADATIONS, "**Degrade**"]
    assert [row[0] for row in models[1:]] == ["frozen", "gara"]


def test_plots_and_sheets_are_pngs(report) -> None:
    out, _ = report
    names = {
        "iou_per_degradation.png",
        "iou_delta_per_degradation.png",  # issue 20, item 10: gara - frozen per degradation
        "gates_gara.png",
        "qualitative_point.png",
        "qualitative_box.png",
    }
    assert names <= {path.name for path in out.glob("*.png")}
    assert not (out / "gates_frozen.png").exists()
    assert not (out / "iou_vs_severity.png").exists()  # one severity: no curve
    for name in names:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) > 200


def test_severity_curves_for_several_severities(tmp_path: Path) -> None:
    results = evaluate(
        {"frozen": tiny_sam()},
        scenes(1),
        "imagenet-c",
        ["box"],
        [1, 5],
        degradations=["gaussian_noise", "brightness"],
        progress=False,
    )
    names = {path.name for path in write_report(results, tmp_path)}
    assert {"iou_vs_severity.png", "iou_vs_severity_per_degradation.png"} <= names
    assert "iou_delta_per_degradation.png" not in names  # one model: nothing to compare
    text = (tmp_path / "summary.md").read_text()
    assert "## Degrade IoU per severity" in text
    per_degradation = markdown_tables(text)[2]
    assert [row[0] for row in per_degradation[1:]] == [
        "clean",
        "gaussian_noise severity 1",
        "gaussian_noise severity 5",
        "brightness severity 1",
        "brightness severity 5",
        "**Degrade**",
    ]


def test_overlay_paints_objects_in_their_colours_over_a_grey_image() -> None:
    image = np.zeros((4, 4, 3), np.uint8)
    image[..., 0] = 200  # pure red background: turns grey outside the masks
    masks = np.zeros((2, 4, 4), bool)
    masks[0, 0, 0] = masks[1, 3, 3] = True
    out = overlay(image, masks, alpha=1.0)
    assert tuple(out[0, 0]) == tuple(object_colour(0).astype(np.uint8))
    assert tuple(out[3, 3]) == tuple(object_colour(1).astype(np.uint8))
    assert out[1, 1, 0] == out[1, 1, 1] == out[1, 1, 2]  # grey elsewhere
