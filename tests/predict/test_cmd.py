"""`garasam predict`: outputs that parse and agree with each other; bad input writes nothing."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from garasam.adapters import GaRAConfig, inject_adapters, save_adapters
from garasam.cli import main
from garasam.commands.predict import expand_inputs
from garasam.predict.masks import decode_rle


@pytest.fixture(autouse=True)
def _quiet_random_tiny_weights():
    with warnings.catch_warnings():  # the bundled tiny weights may not exist yet: random init warns
        warnings.filterwarnings("ignore", message="the bundled tiny SAM weights")
        yield


@pytest.fixture
def images(tmp_path, image):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(image).save(folder / "scene.png")
    Image.fromarray(image[::-1].copy()).save(folder / "flipped.jpg")
    (folder / "notes.txt").write_text("not an image")
    return folder


def _check_outputs(out, name, expected_masks):
    result = json.loads((out / f"{name}.json").read_text())
    assert (result["height"], result["width"]) == (90, 140)
    assert result["model"]["model_type"] == "tiny" and result["model"]["random_weights"] is False
    assert len(result["masks"]) == expected_masks
    for entry in result["masks"]:
        png = np.asarray(Image.open(out / entry["file"])) > 0
        np.testing.assert_array_equal(decode_rle(entry["segmentation"]), png)
        assert entry["area"] == int(png.sum())
        assert isinstance(entry["score"], float)
    overlay = np.asarray(Image.open(out / f"{name}_overlay.png"))
    assert overlay.shape == (90, 140, 3)
    return result


def test_boxes_on_a_folder(images, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code = main(["predict", str(images), "--box", "30,20,100,70", "--box", "0,0,50,40", "--out", str(out)])
    assert code == 0
    assert "wrote 4 masks for 2 images" in capsys.readouterr().out
    result = _check_outputs(out, "scene", 2)
    assert [m["prompt"]["box"] for m in result["masks"]] == [[30, 20, 100, 70], [0, 0, 50, 40]]
    assert result["gates"] == []  # plain SAM: no gates
    _check_outputs(out, "flipped", 2)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "results.json",
            "images.json",
            *(
                f"{n}{suffix}"
                for n in ("scene", "flipped")
                for suffix in (".json", "_overlay.png", "_mask1.png", "_mask2.png")
            ),
        ]
    )
    # issue 20, item 10: one COCO results file for the run, readable by pycocotools
    from pycocotools.coco import COCO

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = COCO(str(out / "images.json")).loadRes(str(out / "results.json"))
    assert len(loaded.getAnnIds()) == 4 and len(loaded.getImgIds()) == 2
    per_image = {
        p["image"]: p for p in (json.loads((out / f"{n}.json").read_text()) for n in ("scene", "flipped"))
    }
    for image in loaded.dataset["images"]:
        boxes = [a["bbox"] for a in loaded.loadAnns(loaded.getAnnIds(imgIds=image["id"]))]
        assert boxes == [m["bbox"] for m in per_image[image["file_name"]]["masks"]]


def test_an_image_named_results_does_not_overwrite_the_run_files(images, tmp_path) -> None:
    (images / "results.png").write_bytes((images / "scene.png").read_bytes())
    out = tmp_path / "out"
    assert main(["predict", str(images / "results.png"), "--box", "1,1,30,30", "--out", str(out)]) == 0
    assert (out / "results-2.json").is_file() and isinstance(
        json.loads((out / "results.json").read_text()), list
    )


def test_points_with_adapters_report_gates(images, tmp_path, tiny_sam) -> None:
    inject_adapters(tiny_sam, GaRAConfig(r_low=4, r_high=8))
    save_adapters(tiny_sam, tmp_path / "adapters")
    out = tmp_path / "out"
    argv = ["predict", str(images / "scene.png"), "--point", "60,45", "--point", "5,5,0"]
    assert main([*argv, "--adapters", str(tmp_path / "adapters"), "--out", str(out)]) == 0
    result = _check_outputs(out, "scene", 1)
    assert result["masks"][0]["prompt"] == {"points": [[60, 45], [5, 5]], "labels": [1, 0], "box": None}
    assert [g["block"] for g in result["gates"]] == list(range(6))
    assert all(0 <= g["mean_active_rank"] <= 8 for g in result["gates"])


def test_auto_masks(images, tmp_path) -> None:
    out = tmp_path / "out"
    argv = ["predict", str(images / "*.png"), "--auto", "--points-per-side", "3", "--out", str(out)]
    assert main([*argv, "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]) == 0
    result = json.loads((out / "scene.json").read_text())
    assert result["masks"]
    _check_outputs(out, "scene", len(result["masks"]))
    assert {"predicted_iou", "stability_score", "point_coords"} <= set(result["masks"][0])
    assert not (out / "flipped.json").exists()  # the glob matched only the PNG


def test_same_names_in_two_folders_do_not_collide(images, tmp_path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "scene.png").write_bytes((images / "scene.png").read_bytes())
    out = tmp_path / "out"
    assert (
        main(["predict", str(images / "scene.png"), str(other), "--box", "1,1,30,30", "--out", str(out)]) == 0
    )
    assert (out / "scene.json").is_file() and (out / "scene-2.json").is_file()


def _edited_adapters(tmp_path, tiny_sam, name, change):
    """Tiny GaRA adapters whose saved config `change` has edited (a hand-edited or foreign file)."""
    inject_adapters(tiny_sam, GaRAConfig(r_low=4, r_high=8))
    folder = save_adapters(tiny_sam, tmp_path / name)
    config = json.loads((folder / "adapter_config.json").read_text())
    change(config)
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder


EDITS = {
    "bad": lambda c: c["backbone"].update(model_type="vit_b", hidden_size=768, num_blocks=12),
    "regex": lambda c: c["adapter"].update(target_modules="((("),
}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["{in}/missing.png", "--box", "1,1,5,5"], "missing.png: no such file or folder"),
        (["{in}/notes.txt", "--box", "1,1,5,5"], "notes.txt: cannot read image"),
        (["{in}/*.gif", "--box", "1,1,5,5"], "no image files match"),
        (["{in}", "--box", "10,10,10,50"], "has zero area"),
        (["{in}", "--box", "10,10,200,50"], "box 10,10,200,50 is outside the 140x90 image"),
        (["{in}", "--point", "60,95"], "point (60,95) is outside the 140x90 image"),
        (["{in}", "--point", "60,45,3"], "point label must be 1 (foreground) or 0 (background)"),
        (["{in}", "--box", "1,2,3"], "expected x0,y0,x1,y1"),
        (["{in}", "--box", "1,1,5,5", "--auto"], "--auto finds every object itself"),
        (["{in}"], "give a prompt: --box x0,y0,x1,y1 and/or --point x,y"),
        (["{in}", "--box", "1,1,5,5", "--box", "2,2,9,9", "--point", "3,3"], "--point goes with one --box"),
        (["{in}", "--box", "1,1,5,5", "--adapters", "{tmp}/nowhere"], "adapter folder does not exist"),
        (["{in}", "--box", "1,1,5,5", "--checkpoint", "{in}/notes.txt"], "cannot tell the model type"),
        (
            ["{in}", "--box", "1,1,5,5", "--checkpoint", "{in}/notes.txt", "--model-type", "tiny"],
            "neither a PyTorch nor a safetensors",
        ),
        (
            ["{in}", "--box", "1,1,5,5", "--adapters", "{bad}", "--model-type", "tiny"],
            "made for a vit_b backbone, but the model is tiny",
        ),
        # issue 13: negative numbers reach their check (11), non-finite ones are named (12), and a
        # hand-edited adapter config with a broken regex is a clear error naming the file (1)
        (["{in}", "--box", "-5,5,40,40"], "box -5,5,40,40 is outside the 140x90 image"),
        (["{in}", "--point", "-1,5"], "point (-1,5) is outside the 140x90 image"),
        (["{in}", "--box", "nan,5,40,40"], "every coordinate must be a finite number"),
        (["{in}", "--box", "1,1,inf,40"], "every coordinate must be a finite number"),
        (["{in}", "--point", "-inf,3"], "every coordinate must be a finite number"),
        (["{in}", "--box", "1,1,5,5", "--adapters", "{regex}"], "'(((' is not a valid regular expression"),
        # issue 20, item 1: a real model type without weights is refused, not run at random
        (["{in}", "--box", "1,1,5,5", "--model-type", "vit_b"], "model type vit_b needs its weights"),
    ],
)
def test_bad_input_fails_clearly_and_writes_nothing(
    images, tmp_path, tiny_sam, capsys, arguments, message
) -> None:
    folders = {
        name: _edited_adapters(tmp_path, tiny_sam, name, edit) if f"{{{name}}}" in arguments else None
        for name, edit in EDITS.items()
    }
    argv = [a.format(**{"in": images, "tmp": tmp_path, **folders}) for a in arguments]
    out = tmp_path / "out"
    try:
        code = main(["predict", *argv, "--out", str(out)])
    except SystemExit as exit_:  # argparse rejects malformed values itself
        code = exit_.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_expand_inputs(images, tmp_path) -> None:
    assert [p.name for p in expand_inputs([str(images)])] == ["flipped.jpg", "scene.png"]
    # repeats collapse, explicit files keep their order
    found = expand_inputs([str(images / "scene.png"), str(images), str(images / "*.jpg")])
    assert [p.name for p in found] == ["scene.png", "flipped.jpg"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="folder holds no images"):
        expand_inputs([str(tmp_path / "empty")])


def test_auto_on_a_one_pixel_image_is_refused_before_the_model_loads(tmp_path, capsys) -> None:
    Image.new("RGB", (1, 1)).save(tmp_path / "dot.png")
    assert main(["predict", str(tmp_path / "dot.png"), "--auto", "--out", str(tmp_path / "out")]) == 2
    assert "dot.png: 1x1 is too small for automatic masks" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_auto_says_which_thresholds_to_lower_when_nothing_passes(images, tmp_path) -> None:
    argv = ["predict", str(images / "scene.png"), "--auto", "--points-per-side", "2"]
    with pytest.warns(UserWarning, match=r"no mask passed the thresholds \(--pred-iou-thresh 1.0"):
        assert main([*argv, "--pred-iou-thresh", "1", "--out", str(tmp_path / "out")]) == 0


def test_a_box_with_clicks_is_one_prompt(images, tmp_path) -> None:
    """Issue 20, item 8: the API took a box and points together, the CLI refused them."""
    out = tmp_path / "out"
    argv = [
        "predict",
        str(images / "scene.png"),
        "--box",
        "30,20,100,70",
        "--point",
        "60,45",
        "--point",
        "35,25,0",
    ]
    assert main([*argv, "--out", str(out)]) == 0
    [mask] = json.loads((out / "scene.json").read_text())["masks"]
    assert mask["prompt"]["box"] == [30, 20, 100, 70] and mask["prompt"]["points"] == [[60, 45], [35, 25]]
    assert mask["prompt"]["labels"] == [1, 0]


def test_multimask_writes_three_candidates_best_first(images, tmp_path) -> None:
    out = tmp_path / "out"
    assert (
        main(["predict", str(images / "scene.png"), "--point", "60,45", "--multimask", "--out", str(out)])
        == 0
    )
    masks = json.loads((out / "scene.json").read_text())["masks"]
    assert len(masks) == 3 and [m["score"] for m in masks] == sorted(
        (m["score"] for m in masks), reverse=True
    )


def test_auto_defaults_find_masks_on_the_bundled_model(tmp_path) -> None:
    """Issue 20, item 6: SAM's thresholds passed nothing on the tiny SAM, silently."""
    from garasam.predict.web import SAMPLES_DIR

    out = tmp_path / "out"
    assert main(["predict", str(SAMPLES_DIR / "coffee.jpg"), "--auto", "--out", str(out)]) == 0
    assert len(json.loads((out / "coffee.json").read_text())["masks"]) >= 5


def test_a_symlink_loop_yields_each_image_once_and_a_dangling_link_is_named(tmp_path) -> None:
    """Issue 29, item 13: a loop under `**` segmented one image 40 times; a dangling .jpg link was
    skipped without a word while a damaged .jpg beside it exits 2."""
    import pytest

    from garasam.errors import DataError

    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"not read here")
    (folder / "loop").symlink_to(folder)
    assert expand_inputs([f"{folder}/**/*.jpg"]) == [folder / "a.jpg"]
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    for item in (f"{folder}/**/*.jpg", str(folder), str(folder / "gone.jpg")):
        with pytest.raises(DataError, match="gone.jpg: a broken symbolic link"):
            expand_inputs([item])


# -- the output folder (issue 29, items 2 and 8) -------------------------------------------------------
def test_an_unwritable_out_is_refused_before_the_first_image(images, tmp_path, monkeypatch, capsys) -> None:
    """predict failed after its first image; now the folder is checked before the model loads."""
    monkeypatch.setattr("garasam.commands.predict.from_pretrained", lambda *a, **k: pytest.fail("loaded"))
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "masks"
    assert main(["predict", str(images), "--box", "30,20,100,70", "--out", str(out)]) == 2
    assert f"cannot write in {out}: {tmp_path / 'file'} is a file, not a folder" in capsys.readouterr().err


def test_a_run_into_its_own_input_folder_does_not_segment_its_outputs(images, tmp_path) -> None:
    args = ["predict", str(images), "--box", "30,20,100,70", "--out", str(images)]
    assert main(args) == 0 and main(args) == 0
    index = json.loads((images / "images.json").read_text())
    assert sorted(Path(i["file_name"]).name for i in index["images"]) == ["flipped.jpg", "scene.png"]
    assert not list(images.glob("*_overlay_overlay.png")) and not list(images.glob("*_mask1_mask1.png"))


def test_a_rerun_leaves_no_file_of_the_last_run_that_it_does_not_describe(
    images, tmp_path, monkeypatch
) -> None:
    out = tmp_path / "out"
    two_boxes = ["--box", "30,20,100,70", "--box", "0,0,50,40"]
    assert main(["predict", str(images / "scene.png"), *two_boxes, "--out", str(out)]) == 0
    assert (out / "scene_mask2.png").is_file() and (out / "results.json").is_file()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("garasam.commands.predict._write_outputs", interrupted)
    assert main(["predict", str(images / "scene.png"), "--box", "30,20,100,70", "--out", str(out)]) == 130
    assert not (out / "results.json").exists() and not (out / "images.json").exists()  # not the last run's
    monkeypatch.undo()
    assert main(["predict", str(images / "scene.png"), "--box", "30,20,100,70", "--out", str(out)]) == 0
    assert not (out / "scene_mask2.png").exists()  # one box now: the last run's second mask is gone
    assert [m["file"] for m in json.loads((out / "scene.json").read_text())["masks"]] == ["scene_mask1.png"]
