"""`garasam track`: per-frame id PNGs, COCO RLE and an overlay video from a folder or a video file;
each bad input named before the model loads, and nothing of another run overwritten."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from garasam.cli import main
from garasam.predict.masks import decode_rle
from garasam.video.clips import read_label_png

MODEL = ["--model-type", "sam2.1_mini", "--random-weights"]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("track")
    frames = root / "frames"
    frames.mkdir()
    for t in range(4):
        image = np.random.default_rng(t).integers(0, 60, (48, 64, 3)).astype(np.uint8)
        image[16:32, 8 + t : 24 + t] = (220, 200, 40)
        Image.fromarray(image).save(frames / f"{t}.jpg")
    mask = np.zeros((48, 64), np.uint8)
    mask[16:32, 9:25] = 255
    Image.fromarray(mask, mode="L").save(root / "mask.png")
    return root


def _track(clip: Path, out: Path, *prompts: str) -> int:
    return main(["track", str(clip / "frames"), *MODEL, *prompts, "--out", str(out)])


def test_a_folder_is_tracked_into_pngs_rle_and_a_video(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    prompts = (
        "--box",
        "8,16,24,32",
        "--point",
        "40,10",
        "--point",
        "5,5,0",
        "--mask",
        f"{clip / 'mask.png'}@1",
    )
    assert _track(clip, out, *prompts) == 0
    record = json.loads((out / "track.json").read_text())
    assert [o["id"] for o in record["settings"]["objects"]] == [1, 2, 3]
    assert record["tracked_frames"] == [0, 3] and len(record["masks"]) == 4 * 3
    for entry in record["masks"]:  # the RLE and the PNG tell the same mask
        labels = read_label_png(out / "masks" / f"{entry['frame']:05d}.png")
        mask = decode_rle(entry["segmentation"])
        assert mask.sum() == entry["area"]
        assert (labels[mask] >= entry["object"]).all()  # a later object may cover an earlier one
    av = pytest.importorskip("av")
    with av.open(str(out / "overlay.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 4
    assert _track(clip, out, *prompts) == 0  # the same run again: allowed, same files


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        ((), "give at least one prompt"),
        (("--box", "1,1,9,9@4"), "object 1: frame 4 is past the end of .*frames \\(4 frames\\)"),
        (("--point", "5,5@0", "--point", "6,6@2"), "the clicks of one object go on one frame"),
        (("--point", "5,5,0"), "at least one foreground click"),
        (("--box", "1,1,9,9@x"), "the frame after @ must be a whole number"),
        (("--box", "1,1,9"), "expected x0,y0,x1,y1"),
        (("--point", "nan,1"), "finite"),
        (("--fps", "nan", "--box", "1,1,9,9"), "--fps"),
    ],
)
def test_bad_prompts_are_named_and_nothing_is_written(
    clip: Path, tmp_path: Path, capsys, prompts, message
) -> None:
    out = tmp_path / "out"
    assert _track(clip, out, *prompts) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "Traceback" not in err and not out.exists()


def test_bad_masks_are_named(clip: Path, tmp_path: Path, capsys) -> None:
    small = tmp_path / "small.png"
    Image.fromarray(np.full((8, 8), 255, np.uint8), mode="L").save(small)
    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros((48, 64), np.uint8), mode="L").save(empty)
    rgb = tmp_path / "rgb.png"
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(rgb)
    for path, message in (
        (small, "mask is 8x8, the video 64x48"),
        (empty, "the mask is empty"),
        (rgb, "mode RGB"),
    ):
        assert _track(clip, tmp_path / "out", "--mask", str(path)) == 2
        assert message in capsys.readouterr().err


def test_bad_videos_are_named(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"no video here" * 20)
    for video, message in (
        (broken, "PyAV cannot decode this video"),
        (tmp_path / "nothing", "no such video file or folder"),
    ):
        assert main(["track", str(video), *MODEL, "--box", "1,1,9,9", "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_another_runs_folder_is_not_overwritten(clip: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert _track(clip, out, "--box", "8,16,24,32") == 0
    before = (out / "track.json").read_text()
    assert _track(clip, out, "--box", "8,16,24,30") == 2
    assert "holds the tracks of another run" in capsys.readouterr().err
    assert (out / "track.json").read_text() == before


def test_the_default_is_the_bundled_sam2_and_missing_weights_are_named(
    clip: Path, tmp_path: Path, capsys
) -> None:
    """Without a model, track takes the bundled sam2.1_tiny; a version without its weights file says so
    (and a type without weights asks for them) before writing anything."""
    from garasam.models.build import SAM2_TINY_WEIGHTS

    frames = str(clip / "frames")
    code = main(["track", frames, "--box", "8,16,24,32", "--out", str(tmp_path / "o")])
    if SAM2_TINY_WEIGHTS.is_file():
        assert code == 0
        assert (
            json.loads((tmp_path / "o" / "track.json").read_text())["settings"]["model_type"] == "sam2.1_tiny"
        )
    else:
        assert (
            code == 2
            and "bundled weights (sam2.1_tiny.safetensors) are not in this version" in capsys.readouterr().err
        )
        assert not (tmp_path / "o").exists()
    mini = ["track", frames, "--model-type", "sam2.1_mini", "--box", "1,1,9,9", "--out", str(tmp_path / "m")]
    assert main(mini) == 2
    assert "needs its weights" in capsys.readouterr().err and not (tmp_path / "m").exists()


def test_an_interrupted_run_is_taken_up_again_with_the_same_settings(clip: Path, tmp_path: Path) -> None:
    """The settings are written before tracking starts, so a run killed mid-video reruns into its folder."""
    out = tmp_path / "out"
    assert _track(clip, out, "--box", "8,16,24,32") == 0
    record = json.loads((out / "track.json").read_text())
    assert record["complete"] is True
    interrupted = {"settings": record["settings"], "complete": False}
    (out / "track.json").write_text(json.dumps(interrupted))
    (out / "overlay.mp4").unlink()
    assert _track(clip, out, "--box", "8,16,24,32") == 0
    assert (
        json.loads((out / "track.json").read_text())["complete"] is True and (out / "overlay.mp4").is_file()
    )


def test_a_binary_mask_with_void_is_read_by_its_ids(clip: Path, tmp_path: Path) -> None:
    labels = np.zeros((48, 64), np.uint8)
    labels[16:32, 9:25] = 1
    labels[0:4, 0:4] = 255  # void, as DAVIS writes it
    path = tmp_path / "ids.png"
    Image.fromarray(labels, mode="L").save(path)
    assert _track(clip, tmp_path / "out", "--mask", str(path)) == 0
    objects = json.loads((tmp_path / "out" / "track.json").read_text())["settings"]["objects"]
    assert objects == [{"id": 1, "frame": 0, "mask": str(path), "value": 1}]


def test_bf16_is_recorded_and_a_run_in_another_precision_is_another_run(
    clip: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out"
    assert _track(clip, out, "--box", "8,16,24,32", "--bf16") == 0
    assert json.loads((out / "track.json").read_text())["settings"]["bf16"] is True
    assert _track(clip, out, "--box", "8,16,24,32") == 2  # float32 into the bf16 run's folder
    assert "holds the tracks of another run" in capsys.readouterr().err
