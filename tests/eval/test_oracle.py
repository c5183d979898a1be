"""`garasam oracle`: Oracle-Corrupt and Oracle-Instance from objects.csv files, checked by hand."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from garasam.cli import main
from garasam.eval.report import OBJECT_COLUMNS

# Two objects, clean + fog + noise; model a is better on fog, b on noise, and each wins one object.
IOU = {
    ("a", "clean"): (0.8, 0.6),
    ("b", "clean"): (0.7, 0.7),
    ("a", "fog"): (0.6, 0.4),
    ("b", "fog"): (0.5, 0.3),
    ("a", "noise"): (0.2, 0.5),
    ("b", "noise"): (0.6, 0.3),
}


def _write(path: Path, models: tuple[str, ...], iou=IOU) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=OBJECT_COLUMNS)
        writer.writeheader()
        for (model, degradation), values in iou.items():
            if model not in models:
                continue
            for index, value in enumerate(values):
                severity = 0 if degradation == "clean" else 1
                row = dict.fromkeys(OBJECT_COLUMNS, "")
                row.update(model=model, image_id="img", object=index, degradation=degradation)
                row.update(severity=severity, prompt="box", iou=value, dice=value)
                writer.writerow(row)
    return path


def test_oracles_by_hand(tmp_path: Path, capsys) -> None:
    a = _write(tmp_path / "a.csv", ("a",))
    b = _write(tmp_path / "b.csv", ("b",))
    assert main(["oracle", str(a), str(b), "--out", str(tmp_path / "out")]) == 0
    summary = json.loads((tmp_path / "out" / "oracle.json").read_text())
    rows = summary["prompts"]["box"]["iou"]
    # a: fog 0.5, noise 0.35 -> 0.425; b: fog 0.4, noise 0.45 -> 0.425
    assert rows["a"]["degrade"] == pytest.approx(0.425) and rows["b"]["degrade"] == pytest.approx(0.425)
    assert rows["a"]["clear"] == pytest.approx(0.7) and rows["b"]["clear"] == pytest.approx(0.7)
    # Oracle-Corrupt: a on fog (0.5), b on noise (0.45) -> 0.475; clean: a tie, 0.7
    assert rows["Oracle-Corrupt"]["degrade"] == pytest.approx(0.475)
    assert summary["prompts"]["box"]["corrupt_choice"] == {"clean": "a", "fog": "a", "noise": "b"}
    # Oracle-Instance: fog max(0.6, 0.5), max(0.4, 0.3) -> 0.5; noise 0.6, 0.5 -> 0.55; clean 0.8, 0.7
    assert rows["Oracle-Instance"]["degrade"] == pytest.approx(0.525)
    assert rows["Oracle-Instance"]["clear"] == pytest.approx(0.75)
    shares = summary["prompts"]["box"]["instance_share"]
    assert shares["a"] == pytest.approx((0.5 + 1.0 + 0.5) / 3) and shares["b"] == pytest.approx(1 / 3)
    markdown = (tmp_path / "out" / "oracle.md").read_text()
    assert "| Oracle-Instance | 52.5 | 75.0 |" in markdown
    assert "Oracle-Instance" in capsys.readouterr().out


def test_only_objects_every_model_scored_count(tmp_path: Path) -> None:
    partial = dict(IOU)
    partial[("b", "fog")] = (0.5,)  # b lost object 1 under fog (e.g. a geometric degradation)
    both = _write(tmp_path / "ab.csv", ("a", "b"), partial)
    assert main(["oracle", str(both), "--out", str(tmp_path / "out")]) == 0
    part = json.loads((tmp_path / "out" / "oracle.json").read_text())["prompts"]["box"]
    assert part["left_out"] == 1 and part["objects"] == 5
    assert part["iou"]["a"]["degrade"] == pytest.approx((0.6 + 0.35) / 2)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "cannot read it as an objects.csv"),
        ("not_objects", "not an objects.csv of garasam eval (no column image_id"),
        ("duplicate", "model 'a' is in both"),
        ("unknown_model", "--model: zzz not in the files"),
        ("one_model", "need two or more"),
        ("bad_iou", "IoU 1.5 outside"),
    ],
)
def test_bad_inputs_are_refused_by_name(tmp_path: Path, capsys, case: str, message: str) -> None:
    a = _write(tmp_path / "a.csv", ("a",))
    args = [str(a), str(_write(tmp_path / "b.csv", ("b",)))]
    if case == "missing":
        args = [str(tmp_path / "nowhere.csv"), str(a)]
    elif case == "not_objects":
        (tmp_path / "r.csv").write_text("model,dataset\nx,y\n")
        args = [str(tmp_path / "r.csv")]
    elif case == "duplicate":
        args = [str(a), str(a)]
    elif case == "unknown_model":
        args += ["--models", "a,zzz"]
    elif case == "one_model":
        args = [str(a)]
    elif case == "bad_iou":
        args = [str(_write(tmp_path / "c.csv", ("a", "b"), {**IOU, ("b", "fog"): (1.5, 0.3)}))]
    assert main(["oracle", *args, "--out", str(tmp_path / "out")]) != 0
    assert message in capsys.readouterr().err
