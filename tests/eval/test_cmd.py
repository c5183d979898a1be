"""`garasam eval` end to end on a tiny Robust-Seg folder, and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from garasam import cli
from garasam.adapters import GaRAConfig, inject_adapters, save_adapters
from garasam.assembly import ModelSpec
from garasam.commands.eval import parse_model_specs
from garasam.data.synthetic import write_scenes
from garasam.errors import ConfigError
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
    assert parse_model_specs(["frozen=none", "g=runs/a"]) == {
        "frozen": ModelSpec(),
        "g": ModelSpec(adapters=Path("runs/a")),
    }
    for bad in (["frozen"], ["=none"], ["a=none", "a=none"]):
        with pytest.raises(ConfigError, match="--model"):
            parse_model_specs(bad)
    base = ["eval", "--data", f"robustseg:{dataset}", "--out", str(tmp_path / "o")]
    assert cli.main([*base, "--severities", "x"]) == 2
    assert cli.main([*base, "--checkpoint", "sam.pth"]) == 2
    assert cli.main([*base, "--example-degradations", "smog"]) == 2
    errors = capsys.readouterr().err
    assert (
        "--severities" in errors
        and "cannot tell its model type; add --model-type" in errors
        and "smog" in errors
    )


def _eval(data: str, out: Path) -> int:
    return cli.main(["eval", "--data", data, "--only", "brightness", "--out", str(out), "--device", "cpu"])


def test_an_evaluation_with_no_usable_sample_is_an_error(tmp_path: Path, capsys) -> None:
    """Issue 13, case 5: every image unreadable used to give exit 0, "0 images" and n/a tables."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for stem in ("a", "b"):
        (folder / f"{stem}.jpg").write_bytes(b"not a jpeg at all")
        (folder / f"{stem}.png").write_bytes(b"nor a png")
    assert _eval(f"folder:{folder}", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "no usable sample" in err and "a.jpg" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "results.json").exists()


def _coco(root: Path, segmentations: list[dict]) -> Path:
    """A COCO file with one 8 x 8 image per segmentation."""
    images, annotations = [], []
    for index, segmentation in enumerate(segmentations, start=1):
        Image.new("RGB", (8, 8), (index * 40, 90, 30)).save(root / f"img{index}.png")
        images.append({"id": index, "file_name": f"img{index}.png", "height": 8, "width": 8})
        annotations.append(
            {"id": 10 + index, "image_id": index, "category_id": 1, "segmentation": segmentation}
        )
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations}))
    return path


GOOD_RLE = {"size": [8, 8], "counts": [18, 4, 4, 4, 4, 4, 26]}  # a 4 x 3 block


def test_a_coco_file_whose_only_annotation_is_bad_is_an_error(tmp_path: Path, capsys) -> None:
    """Issue 13, case 6."""
    path = _coco(tmp_path, [{"size": [8, 8], "counts": "!!!"}])
    assert _eval(f"coco:{path}", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "no usable sample" in err and "bad segmentation in annotation 11" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_skipped_samples_are_counted_and_listed_in_the_report(tmp_path: Path) -> None:
    path = _coco(tmp_path, [GOOD_RLE, {"size": [8, 8], "counts": "!!!"}])
    assert _eval(f"coco:{path}", tmp_path / "o") == 0
    summary = (tmp_path / "o" / "summary.md").read_text()
    assert "1 images (1 item(s) skipped, listed at the end)" in summary
    assert "## Skipped: 1 item(s)" in summary and "bad segmentation in annotation 12" in summary
    assert len(json.loads((tmp_path / "o" / "results.json").read_text())["problems"]) == 1


def test_a_real_model_type_without_weights_is_refused(dataset: Path, tmp_path: Path, capsys) -> None:
    """Issue 20, item 1: `--sam vit_b` without a checkpoint used to report IoU of a random ViT."""
    argv = ["eval", "--data", f"robustseg:{dataset}", "--sam", "vit_b", "--out", str(tmp_path / "o")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "model type vit_b needs its weights" in err and "--random-weights" in err
    assert not (tmp_path / "o").exists()


def test_a_report_on_random_weights_says_so(dataset: Path, tmp_path: Path) -> None:
    from garasam.data.readers import open_dataset
    from garasam.eval.protocol import evaluate
    from garasam.eval.report import write_report

    data = open_dataset(f"robustseg:{dataset}")
    results = evaluate({"random": tiny_sam(seed=1)}, data, degradations=["brightness"], device="cpu")
    write_report(results, tmp_path / "o")
    summary = (tmp_path / "o" / "summary.md").read_text()
    assert "**Random weights:** random had no SAM checkpoint" in summary
    assert "| random | none (frozen SAM) | tiny (random weights) |" in summary


@pytest.mark.parametrize("selection", [["--only", "clean"], ["--suite", "none"]])
def test_photos_can_be_scored_as_they_are(dataset: Path, tmp_path: Path, selection) -> None:
    """Issue 20, item 7: degraded photos evaluated without adding a degradation."""
    out = tmp_path / "o"
    assert (
        cli.main(["eval", "--data", f"robustseg:{dataset}", *selection, "--out", str(out), "--device", "cpu"])
        == 0
    )
    data = json.loads((out / "results.json").read_text())
    assert {r["degradation"] for r in data["results"]} == {"clean"}
    summary = (out / "summary.md").read_text()
    assert "no degradation added (the images scored as they are" in summary


def test_evaluating_on_training_images_is_flagged(dataset: Path, tmp_path: Path) -> None:
    """Issue 20, item 7: adapters record what they trained on; an evaluation on it says so."""
    from garasam.data.provenance import write_training_data

    folder = gara_folder(tmp_path)
    trained = sorted((dataset / "clear").iterdir())[:1]  # one of the two evaluated images
    write_training_data(folder, [f"robustseg:{dataset}"], trained)
    out = tmp_path / "o"
    argv = ["eval", "--data", f"robustseg:{dataset}", "--only", "brightness", "--model", f"gara={folder}"]
    with pytest.warns(UserWarning, match=r"gara: 1 of the 2 evaluated images were among its training images"):
        assert cli.main([*argv, "--out", str(out), "--device", "cpu"]) == 0
    assert (
        "**Training images:** gara was trained on 1 of the 2 evaluated images"
        in (out / "summary.md").read_text()
    )
    record = json.loads((out / "results.json").read_text())["models"]["gara"]["training_overlap"]
    assert (record["images"], record["of"]) == (1, 2)


def test_adapters_flag_is_short_for_a_frozen_and_an_adapted_model() -> None:
    """Issue 20, item 8: predict and serve take --adapters, eval takes it too."""
    from garasam.commands.eval import model_specs

    assert model_specs(None, [Path("runs/gara/adapters")]) == ["frozen=none", "gara=runs/gara/adapters"]
    assert model_specs(None, None) == ["frozen=none"]
    assert model_specs(["base=none"], [Path("x/lora16")]) == ["base=none", "lora16=x/lora16"]
    with pytest.raises(ConfigError, match="used twice"):
        parse_model_specs(model_specs(None, [Path("a/gara/adapters"), Path("b/gara/adapters")]))


# -- the output folder (issue 29, items 2, 5 and 8) ----------------------------------------------------
def _eval_scenes(dataset: Path, out: Path, *extra: str, only: str = "gauss_noise") -> int:
    args = ["eval", "--data", f"robustseg:{dataset}", "--only", only, "--model", "frozen=none"]
    return cli.main([*args, "--out", str(out), "--device", "cpu", *extra])


@pytest.mark.parametrize("disk", ["file_in_place", "full"])
def test_an_unwritable_out_is_refused_before_any_work(disk, dataset, tmp_path, monkeypatch, capsys) -> None:
    """An unwritable --out was found at results.json, after the whole evaluation."""
    from tests.test_io import full_disk

    monkeypatch.setattr("garasam.eval.protocol.evaluate", lambda *a, **k: pytest.fail("the work started"))
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "out"
    if disk == "full":
        full_disk(monkeypatch)
        out = tmp_path / "out"
    assert _eval_scenes(dataset, out) == 2
    error = capsys.readouterr().err
    assert f"cannot write in {out}: " in error
    assert ("free on its disk" if disk == "full" else f"{tmp_path / 'file'} is a file, not a folder") in error


def test_a_full_disk_at_the_plots_is_named_and_keeps_the_results(
    dataset, tmp_path, monkeypatch, capsys
) -> None:
    from tests.test_io import fsync_fails

    out = tmp_path / "out"
    real_fsync = __import__("os").fsync
    fsync_fails(monkeypatch, out / ".iou_per_degradation.png.")  # its temp file
    assert _eval_scenes(dataset, out) == 2
    assert (
        f"cannot write {out / 'iou_per_degradation.png'}: No space left on device" in capsys.readouterr().err
    )
    assert json.loads((out / "results.json").read_text())["num_images"] == 2  # written before, intact
    monkeypatch.setattr("os.fsync", real_fsync)
    assert _eval_scenes(dataset, out) == 0 and (out / "iou_per_degradation.png").is_file()


def test_a_last_runs_plots_and_sheets_do_not_stay(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    two = ("--suite", "imagenet-c", "--severities", "1,3", "--examples", "1")
    assert _eval_scenes(dataset, out, *two, only="brightness") == 0
    assert (out / "iou_vs_severity.png").is_file() and (out / "qualitative_box.png").is_file()
    (out / "notes.txt").write_text("the user's")
    assert _eval_scenes(dataset, out, "--examples", "0") == 0  # one severity, no examples
    assert not (out / "iou_vs_severity.png").exists() and not (out / "qualitative_box.png").exists()
    assert (out / "notes.txt").is_file() and (out / "iou_per_degradation.png").is_file()
