"""The paper's Table 1 comparison as one `garasam eval`: SAM, HQ-SAM, RobustSAM and GaRA (on SAM and
on HQ-SAM) on identical inputs, with the paper's numbers beside ours; and the `--model` forms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from garasam import cli
from garasam.adapters import GaRAConfig, inject_adapters, save_adapters
from garasam.assembly import ModelSpec
from garasam.commands.eval import parse_model_specs
from garasam.data.synthetic import write_scenes
from garasam.errors import ConfigError
from garasam.eval.paper import PAPER_TABLES, paper_method
from garasam.models import build_sam, save_sam

pytestmark = pytest.mark.filterwarnings("ignore:.*evaluated images were among its training images")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A two-image test set, random HQ-SAM and RobustSAM checkpoints, GaRA adapters on SAM and on HQ-SAM
    (trained a few steps on HQ-SAM, so that they change its outputs)."""
    root = tmp_path_factory.mktemp("baselines")
    write_scenes(root / "data", 2, seed=0, size=(64, 64), family="target", split="test")
    torch.manual_seed(0)
    save_sam(build_sam("hq_tiny"), root / "hq_tiny.safetensors")
    save_sam(build_sam("robust_tiny"), root / "robust_tiny.safetensors")
    hq = build_sam("hq_tiny", root / "hq_tiny.safetensors")
    inject_adapters(hq, GaRAConfig(r_low=4, r_high=8))
    with torch.no_grad():  # nonzero B: the adapters change the model
        for name, parameter in hq.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.05)
    save_adapters(hq, root / "gara_hq")
    save_adapters(inject_adapters(build_sam("tiny"), GaRAConfig(r_low=4, r_high=8)), root / "gara")
    return {
        "root": root,
        "data": root / "data",
        "hq": root / "hq_tiny.safetensors",
        "robust": root / "robust_tiny.safetensors",
        "gara": root / "gara",
        "gara_hq": root / "gara_hq",
    }


def test_four_models_and_gara_on_hq_sam_in_one_run(setup: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "table1"
    code = cli.main(
        [
            "eval",
            "--data", f"robustseg:{setup['data']}",
            "--only", "fog,gauss_noise",
            "--model", "sam=none",
            "--model", f"hqsam=hq_tiny:{setup['hq']}",
            "--model", f"robustsam=robust_tiny:{setup['robust']}",
            "--model", f"gara={setup['gara']}",
            "--model", f"gara_hq=hq_tiny:{setup['hq']}:{setup['gara_hq']}",
            "--paper", "lvis",
            "--examples", "0",
            "--device", "cpu",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    data = json.loads((out / "results.json").read_text())
    models = data["models"]
    assert list(models) == ["sam", "hqsam", "robustsam", "gara", "gara_hq"]
    types = {name: models[name]["backbone"]["model_type"] for name in models}
    assert types == {
        "sam": "tiny",
        "hqsam": "hq_tiny",
        "robustsam": "robust_tiny",
        "gara": "tiny",
        "gara_hq": "hq_tiny",
    }
    assert models["hqsam"]["backbone"]["checkpoint"]["name"] == "hq_tiny.safetensors"
    assert models["gara_hq"]["adapter"]["adapter_type"] == "gara"
    # identical inputs: every model scored the same objects under the same conditions
    counts: dict[str, set] = {}
    for row in data["results"]:
        counts.setdefault(row["model"], set()).add((row["degradation"], row["prompt"], row["count"]))
    assert len({frozenset(c) for c in counts.values()}) == 1
    iou = {(r["model"], r["degradation"], r["prompt"]): r["iou"] for r in data["results"]}
    assert iou[("gara_hq", "fog", "box")] != iou[("hqsam", "fog", "box")]  # the adapters act on HQ-SAM
    assert iou[("hqsam", "fog", "box")] != iou[("robustsam", "fog", "box")]
    summary = (out / "summary.md").read_text()
    section = summary.split("## Beside the paper: Table 1: ViT-B, LVIS (seen), IoU %")[1].split("\n## ")[0]
    rows = {line.split("|")[1].strip(): line for line in section.splitlines() if line.startswith("| ")}
    assert "| SAM | " in rows["sam"] and "| 65.0 |" in rows["sam"]
    assert "| HQ-SAM | " in rows["hqsam"] and "| 69.5 |" in rows["hqsam"]
    assert "| RobustSAM | " in rows["robustsam"] and "| 72.7 |" in rows["robustsam"]
    assert "| GaRA-SAM | " in rows["gara"] and "| 77.0 |" in rows["gara"]
    assert rows["gara_hq"].split("|")[2].strip() == "-"  # the paper has no GaRA on HQ-SAM
    assert "not the paper's backbone for this table (vit_b)" in section


@pytest.mark.parametrize(
    ("identity", "method"),
    [
        ({"backbone": {"model_type": "vit_b"}, "adapter": None}, "SAM"),
        ({"backbone": {"model_type": "hq_vit_l"}, "adapter": None}, "HQ-SAM"),
        ({"backbone": {"model_type": "robust_vit_h"}, "adapter": None}, "RobustSAM"),
        ({"backbone": {"model_type": "vit_b"}, "adapter": {"adapter_type": "gara"}}, "GaRA-SAM"),
        ({"backbone": {"model_type": "vit_b"}, "adapter": {"adapter_type": "lora", "r": 128}}, "LoRA-128"),
        ({"backbone": {"model_type": "vit_b"}, "adapter": {"adapter_type": "moe_lora"}}, "MoE-LoRA"),
        ({"backbone": {"model_type": "hq_vit_b"}, "adapter": {"adapter_type": "gara"}}, None),
        ({"backbone": {"model_type": "custom"}, "adapter": None}, None),
        ({"backbone": {"model_type": "sam2.1_hiera_b+"}, "adapter": None}, None),  # not in the paper
        ({"backbone": {"model_type": "sam2.1_hiera_b+"}, "adapter": {"adapter_type": "gara"}}, None),
    ],
)
def test_each_model_is_matched_to_its_paper_row(identity: dict, method: str | None) -> None:
    assert paper_method(identity) == method


def test_the_paper_tables_hold_the_reference_numbers() -> None:
    """Spot checks against shared/reference/gara-sam.md, section 6."""
    assert PAPER_TABLES["lvis"].rows["RobustSAM"][("box", "clear")] == 84.3
    assert PAPER_TABLES["lvis"].rows["LoRA-256"][("point", "degr")] == 73.4
    assert PAPER_TABLES["bdd_lis"].rows["RobustSAM"][("box", "clear")] == 78.1
    assert PAPER_TABLES["acdc"].rows["GaRA-SAM"][("box", "clear")] == 71.6


def test_model_spec_forms() -> None:
    specs = parse_model_specs(
        [
            "frozen=none",
            "gara=runs/gara/adapters",
            "hq=hq_vit_b:w/sam_hq_vit_b.pth",
            "rs=robust_vit_l:w/robustsam_checkpoint_l.pth",
            "gara_hq=hq_vit_b:w/sam_hq_vit_b.pth:runs/gara_hq/adapters",
            "tiny=tiny:none",
        ]
    )
    assert specs == {
        "frozen": ModelSpec(),
        "gara": ModelSpec(adapters=Path("runs/gara/adapters")),
        "hq": ModelSpec("hq_vit_b", "w/sam_hq_vit_b.pth"),
        "rs": ModelSpec("robust_vit_l", "w/robustsam_checkpoint_l.pth"),
        "gara_hq": ModelSpec("hq_vit_b", "w/sam_hq_vit_b.pth", Path("runs/gara_hq/adapters")),
        "tiny": ModelSpec("tiny", None),
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("hq=hq_vit_x:w.pth", "'hq_vit_x' is not a model type"),
        ("hq=hq_vit_b:", "no checkpoint after hq_vit_b:"),
        ("hq=hq_vit_b: :adapters", "no checkpoint after hq_vit_b:"),
    ],
)
def test_bad_model_specs_are_refused_by_name(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_model_specs([spec])


def test_a_missing_or_wrong_family_checkpoint_stops_before_any_image(
    setup: dict[str, Path], tmp_path: Path, capsys
) -> None:
    base = ["eval", "--data", f"robustseg:{setup['data']}", "--device", "cpu", "--examples", "0"]
    assert cli.main([*base, "--model", f"hq=robust_tiny:{setup['hq']}", "--out", str(tmp_path / "a")]) == 2
    assert "holds HQ-SAM" in capsys.readouterr().err
    assert (
        cli.main([*base, "--model", f"hq=hq_tiny:{tmp_path / 'nope.pth'}", "--out", str(tmp_path / "b")]) == 2
    )
    assert "no such checkpoint file" in capsys.readouterr().err
    assert cli.main([*base, "--model", "hq=hq_tiny:none", "--out", str(tmp_path / "c")]) == 2
    assert "hq_tiny needs its weights" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in "abc")


def test_an_unknown_paper_table_is_refused(setup: dict[str, Path], tmp_path: Path, capsys) -> None:
    argv = ["eval", "--data", f"robustseg:{setup['data']}", "--paper", "coco", "--out", str(tmp_path / "o")]
    assert cli.main(argv) == 2
    assert "argument --paper: invalid choice: 'coco'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_sam2_and_sam_in_one_run_each_in_its_own_geometry(setup: dict[str, Path], tmp_path: Path) -> None:
    """Issue 16: SAM 2.1 stretches the image to the square, SAM pads it; in one run each model gets the
    same degraded image and prompts in its own geometry, and a model's scores do not depend on what
    it is compared with."""
    torch.manual_seed(0)
    save_sam(build_sam("sam2.1_mini"), tmp_path / "sam2.safetensors")
    adapted = inject_adapters(
        build_sam("sam2.1_mini", tmp_path / "sam2.safetensors"), GaRAConfig(r_low=4, r_high=8)
    )
    save_adapters(adapted, tmp_path / "gara2")
    base = [
        "eval",
        "--data",
        f"robustseg:{setup['data']}",
        "--only",
        "fog",
        "--examples",
        "1",
        "--device",
        "cpu",
    ]
    spec = f"sam2.1_mini:{tmp_path / 'sam2.safetensors'}"
    mixed = [
        *base,
        "--model",
        "sam=none",
        "--model",
        f"sam2={spec}",
        "--model",
        f"gara2={spec}:{tmp_path / 'gara2'}",
    ]
    assert cli.main([*mixed, "--out", str(tmp_path / "mixed")]) == 0
    assert cli.main([*base, "--model", "sam=none", "--out", str(tmp_path / "alone")]) == 0
    data = json.loads((tmp_path / "mixed" / "results.json").read_text())
    assert data["config"]["input_geometry"] == {
        "sam": "256 px, longest side, zero padded",
        "sam2": "256 px, stretched to the square (SAM 2)",
        "gara2": "256 px, stretched to the square (SAM 2)",
    }
    assert data["models"]["gara2"]["backbone"]["model_type"] == "sam2.1_mini"
    rows = {(r["model"], r["degradation"], r["prompt"]): r for r in data["results"]}
    assert rows[("sam2", "fog", "box")]["iou"] == rows[("gara2", "fog", "box")]["iou"]  # zero-initialised
    assert rows[("sam2", "fog", "box")]["count"] == rows[("sam", "fog", "box")]["count"]  # the same objects
    alone = json.loads((tmp_path / "alone" / "results.json").read_text())["results"]
    for row in alone:
        assert rows[(row["model"], row["degradation"], row["prompt"])]["iou"] == row["iou"]
