"""`garasam eval` end to end on a tiny Robust-Seg folder, and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from garasam import cli
from garasam.adapters import GaRAConfig, inject_adapters, save_adapters
from garasam.data.synthetic import write_scenes
from garasam.errors import ConfigError
from garasam.eval.cmd import parse_model_specs
from tests.eval.conftest import tiny_sam

pytestmark = pytest.mark.filterwarnings("ignore:the bundled tiny SAM weights")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("scenes")
    write_scenes(root, 2, seed=0, size=(64, 64), family="target", split="test")
    return root


def gara_folder(root: Path) -> Path:
    """Zero-initialised GaRA adapters for the tiny SAM, as `garasam train` would save them."""
    return save_adapters(inject_adapters(tiny_sam(), GaRAConfig(r_low=4, r_high=8)), root / "gara")


def test_eval_writes_a_report_for_two_models(dataset: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = cli.main(
        [
            "eval",
            "--data", f"robustseg:{dataset}",
            "--only", "brightness,elastic_transform",
            "--model", "frozen=none",
            "--model", f"gara={gara_folder(tmp_path)}",
            "--out", str(out),
            "--examples", "1",
            "--device", "cpu",
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "| frozen |" in printed and "| gara |" in printed
    data = json.loads((out / "results.json").read_text())
    assert data["models"]["gara"]["adapters_dir"] == str(tmp_path / "gara")
    assert data["models"]["gara"]["adapter_file"]["backbone"]["model_type"] == "tiny"
    assert data["config"]["dataset"] == f"robustseg:{dataset}" and data["num_images"] == 2
    # the zero-initialised adapters leave SAM unchanged: identical rows for both models
    rows = {(r["model"], r["degradation"], r["prompt"]): r for r in data["results"]}
    for (model, degradation, prompt), row in rows.items():
        if model == "gara":
            frozen = rows[("frozen", degradation, prompt)]
            assert {k: row[k] for k in ("iou", "dice", "count")} == {
                k: frozen[k] for k in ("iou", "dice", "count")
            }
    for name in (
        "summary.md",
        "results.csv",
        "iou_per_degradation.png",
        "gates_gara.png",
        "qualitative_box.png",
    ):
        assert (out / name).is_file()


def test_adapters_of_another_backbone_are_refused(dataset: Path, tmp_path: Path, capsys) -> None:
    folder = gara_folder(tmp_path)
    config = json.loads((folder / "adapter_config.json").read_text())
    config["backbone"].update(model_type="vit_b", hidden_size=768, num_blocks=12)
    (folder / "adapter_config.json").write_text(json.dumps(config))
    code = cli.main(
        ["eval", "--data", f"robustseg:{dataset}", "--model", f"gara={folder}", "--out", str(tmp_path / "o")]
    )
    assert code == 2
    message = capsys.readouterr().err
    assert "vit_b" in message and str(folder) in message
    assert not (tmp_path / "o" / "results.json").exists()


def test_model_specs_and_option_errors(dataset: Path, tmp_path: Path, capsys) -> None:
    assert parse_model_specs(["frozen=none", "g=runs/a"]) == {"frozen": None, "g": Path("runs/a")}
    for bad in (["frozen"], ["=none"], ["a=none", "a=none"]):
        with pytest.raises(ConfigError, match="--model"):
            parse_model_specs(bad)
    base = ["eval", "--data", f"robustseg:{dataset}", "--out", str(tmp_path / "o")]
    assert cli.main([*base, "--severities", "x"]) == 2
    assert cli.main([*base, "--checkpoint", "sam.pth"]) == 2
    assert cli.main([*base, "--example-degradations", "smog"]) == 2
    errors = capsys.readouterr().err
    assert "--severities" in errors and "needs --sam" in errors and "smog" in errors
