"""`garasam corrupt --video`: degraded clips in the frames + masks layout, read back by the clip
reader, resumable per sequence, one run's settings per folder, each bad flag named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from garasam.cli import main
from garasam.video.clips import read_frames_folder


@pytest.fixture
def data(tmp_path: Path) -> Path:
    for sequence in ("a", "b"):
        root = tmp_path / "data" / sequence
        (root / "frames").mkdir(parents=True)
        (root / "masks").mkdir()
        for t in range(4):
            image = np.random.default_rng(t).integers(0, 255, (32, 40, 3)).astype(np.uint8)
            Image.fromarray(image).save(root / "frames" / f"{t:05d}.png")
            if t in (0, 2):
                labels = np.zeros((32, 40), np.uint8)
                labels[5:15, 5:15], labels[20:30, 20:30] = 1, 2
                Image.fromarray(labels, mode="L").save(root / "masks" / f"{t:05d}.png")
    return tmp_path / "data"


def _corrupt(data: Path, out: Path, *flags: str) -> int:
    return main(["corrupt", "--video", "--data", f"frames:{data}", "--out", str(out), *flags])


def test_clips_are_written_coherently_and_read_back(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _corrupt(data, out, "--only", "fog,gauss_noise,elastic_transform", "--intensity-low", "0.3") == 0
    source = {c.name: c for c in read_frames_folder(data)}
    for folder in ("clean", "fog", "gauss_noise", "elastic_transform"):
        clips = read_frames_folder(out / folder)
        assert [c.name for c in clips] == ["a", "b"]
        for clip in clips:
            assert len(clip) == 4 and sorted(clip.annotations) == [0, 2]
            masks = clip.masks(0)
            assert sorted(masks) == [1, 2]
            original = source[clip.name].masks(0)
            moved = any(not np.array_equal(masks[i], original[i]) for i in (1, 2))
            assert moved == (folder == "elastic_transform")  # only the geometric one warps masks
    clean = read_frames_folder(out / "clean")[0]
    assert np.array_equal(clean.frame(1), source["a"].frame(1))
    record = json.loads((out / "fog" / "a" / ".done").read_text())
    assert min(record["intensity"]) == pytest.approx(0.3, abs=1e-4) and max(
        record["intensity"]
    ) == pytest.approx(1.0)
    assert json.loads((out / "elastic_transform" / "a" / ".done").read_text())["intensity"] is None


def test_an_interrupted_sequence_is_written_again(data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert _corrupt(data, out, "--only", "fog") == 0
    first = (out / "fog" / "b" / "frames" / "00003.png").read_bytes()
    (out / "fog" / "b" / ".done").unlink()
    (out / "fog" / "b" / "frames" / "00003.png").unlink()
    capsys.readouterr()
    assert _corrupt(data, out, "--only", "fog") == 0
    assert "1 clip(s) written, 3 already complete" in capsys.readouterr().out
    assert (out / "fog" / "b" / "frames" / "00003.png").read_bytes() == first  # seeded: the same pixels


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--intensity-low", "1.5"], "--intensity-low"),
        (["--intensity-low", "nan"], "--intensity-low"),
        (["--only", "haze"], "unknown degradation"),
    ],
)
def test_bad_flags_are_named(data: Path, tmp_path: Path, capsys, flags: list[str], message: str) -> None:
    assert _corrupt(data, tmp_path / "out", *flags) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "out").exists()


def test_video_flags_need_video_and_a_video_reader(data: Path, tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "out")
    assert main(["corrupt", "--data", f"frames:{data}", "--out", out, "--intensity-low", "0.5"]) == 2
    assert "--intensity-low is for --video" in capsys.readouterr().err
    assert main(["corrupt", "--video", "--data", f"coco:{data}", "--out", out]) == 2
    assert "with a video reader (davis, frames, youtube-vos, mose)" in capsys.readouterr().err


def test_another_runs_settings_are_refused(data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert _corrupt(data, out, "--only", "fog", "--seed", "1") == 0
    assert _corrupt(data, out, "--only", "fog", "--seed", "2") == 2
    assert "holds a run with seed=1, this run has 2" in capsys.readouterr().err
