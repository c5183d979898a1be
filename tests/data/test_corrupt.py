"""`garasam corrupt`: the Robust-Seg layout, resuming, crash safety (kill -9), bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from garasam.cli import main
from garasam.data.degradations import get_suite
from garasam.data.readers import RobustSegReader
from garasam.data.synthetic import write_scenes

ROOT = Path(__file__).resolve().parents[2]


def _files(folder: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()}


def test_corrupt_writes_every_folder_then_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_scenes(tmp_path / "src", num=3, seed=0, size=(40, 48))
    out = tmp_path / "out"
    args = ["corrupt", "--data", f"robustseg:{tmp_path / 'src'}", "--out", str(out), "--workers", "1"]
    assert main(args) == 0
    assert "54 file(s) written, 0 already present" in capsys.readouterr().out  # 3 x (2 + 15 + 1 warped masks)
    names = [d.name for d in get_suite("robustseg")]
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert folders == sorted(["clear", "masks", "masks_elastic_transform", *names])
    for folder in folders:
        assert len(list((out / folder).iterdir())) == 3, folder
    for name in ["clean", *names]:  # every folder reads back as a dataset with the same objects
        reader = RobustSegReader(out, degradation=name)
        sample = reader[0]
        assert sample.image.shape == (40, 48, 3) and len(sample.masks) >= 1
    clean, warped = RobustSegReader(out)[1], RobustSegReader(out, degradation="elastic_transform")[1]
    assert clean.meta["object_ids"] == warped.meta["object_ids"]
    assert any(
        not np.array_equal(a, b) for a, b in zip(clean.masks, warped.masks, strict=True)
    )  # masks moved
    before = _files(out)
    assert main(args) == 0
    assert "0 file(s) written, 54 already present (3 image(s) complete" in capsys.readouterr().out
    assert _files(out) == before


def test_corrupt_imagenet_c_subset_is_reproducible(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_scenes(tmp_path / "src", num=2, seed=0, size=(32, 32))
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        argv = [
            "corrupt",
            "--data",
            f"robustseg:{tmp_path / 'src'}",
            "--out",
            str(out),
            "--suite",
            "imagenet-c",
        ]
        argv += ["--only", "gaussian_noise,elastic_transform", "--severities", "1,3", "--workers", "2"]
        assert main(argv) == 0
        runs.append(out)
    folders = sorted(p.name for p in runs[0].iterdir() if p.is_dir())
    assert folders == [
        "clear",
        "elastic_transform_s1",
        "elastic_transform_s3",
        "gaussian_noise_s1",
        "gaussian_noise_s3",
        "masks",
        "masks_elastic_transform_s1",
        "masks_elastic_transform_s3",
    ]
    for path in runs[0].rglob("*.jpg"):  # same seeds -> same bytes, whichever worker did the image
        assert path.read_bytes() == (runs[1] / path.relative_to(runs[0])).read_bytes()
    noisy = np.asarray(Image.open(next((runs[0] / "gaussian_noise_s3").iterdir())), dtype=float)
    clean = np.asarray(Image.open(next((runs[0] / "clear").iterdir())), dtype=float)
    assert np.abs(noisy - clean).mean() > 5


def test_corrupt_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_scenes(tmp_path / "src", num=1, seed=0, size=(32, 32))
    base = [
        "corrupt",
        "--data",
        f"robustseg:{tmp_path / 'src'}",
        "--out",
        str(tmp_path / "out"),
        "--workers",
        "1",
    ]
    assert main([*base, "--severities", "3"]) == 2
    assert "--severities [3] not available for robustseg/snow" in capsys.readouterr().err
    assert main([*base, "--only", "sunshine"]) == 2
    assert "unknown degradation(s) ['sunshine']" in capsys.readouterr().err
    assert main([*base, "--suite", "imagenet-d"]) == 2
    assert main(["corrupt", "--out", str(tmp_path)]) == 2
    assert "--data and --out are required" in capsys.readouterr().err
    assert main([*base, "--only", "fog"]) == 0
    assert main([*base, "--only", "fog", "--seed", "1"]) == 2  # would mix two seeds in one folder
    assert "holds a run with seed=0, this run has 1" in capsys.readouterr().err
    assert main(["corrupt", "--list"]) == 0
    assert "elastic_transform_s1 .. elastic_transform_s5/ (geometric" in capsys.readouterr().out


def test_corrupt_skips_bad_images_unless_strict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    write_scenes(src, num=3, seed=0, size=(32, 32))
    (src / "clear" / "source_train_0000001.jpg").write_bytes(b"broken")
    base = ["corrupt", "--data", f"robustseg:{src}", "--only", "fog", "--workers", "1"]
    assert main([*base, "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "1 problem(s)" in captured.out and "source_train_0000001.jpg: cannot read image" in captured.err
    assert sorted(p.stem for p in (tmp_path / "out" / "fog").iterdir()) == [
        "source_train_0000000",
        "source_train_0000002",
    ]
    assert main([*base, "--out", str(tmp_path / "strict"), "--strict"]) == 2
    assert "source_train_0000001.jpg: cannot read image" in capsys.readouterr().err


@pytest.mark.slow
def test_corrupt_survives_kill_9(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    write_scenes(src, num=30, seed=0, size=(64, 64))
    argv = [sys.executable, "-m", "garasam.cli", "corrupt", "--data", f"robustseg:{src}", "--out", str(out)]
    argv += ["--workers", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    expected = 30 * (2 + 15 + 1)
    process = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if out.is_dir() and sum(1 for p in out.rglob("*.jpg")) >= expected // 4:
            break
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)  # the command and its worker processes, mid-write
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    finished = {p: t for p, t in _files(out).items() if not p.name.startswith(".") and p.suffix != ".json"}
    assert 0 < len(finished) < expected
    for path in finished:  # atomic writes: every visible file is complete
        if path.suffix == ".jpg":
            Image.open(path).load()
        else:
            np.load(path)
    rerun = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{expected - len(finished)} file(s) written, {len(finished)} already present" in rerun.stdout
    files = {p: t for p, t in _files(out).items() if p.suffix != ".json"}
    assert len(files) == expected and not any(p.name.startswith(".") for p in files)  # temp files cleaned
    assert all(files[path] == mtime for path, mtime in finished.items())  # finished files not rewritten
    for name in ["clean", *(d.name for d in get_suite("robustseg"))]:
        assert len(list(RobustSegReader(out, degradation=name))) == 30


def test_a_full_disk_is_named_and_a_rerun_finishes(tmp_path: Path, monkeypatch, capsys) -> None:
    """Issue 29, item 5: NumPy's "393216 requested and 139136 written" came out as a traceback."""
    from tests.test_io import full_disk

    write_scenes(tmp_path / "src", num=2, seed=0, size=(40, 48))
    out = tmp_path / "out"
    args = ["corrupt", "--data", f"robustseg:{tmp_path / 'src'}", "--out", str(out), "--workers", "1"]
    real_save = np.save

    def short_write(handle, array, **kwargs):  # NumPy's own words when the disk fills mid-array
        full_disk(monkeypatch)
        raise OSError("393216 requested and 139136 written")

    monkeypatch.setattr(np, "save", short_write)
    assert main(args) == 2
    error = capsys.readouterr().err
    assert (
        f"garasam corrupt: error: cannot write {out / 'masks'}" in error
        and "No space left on device" in error
    )
    monkeypatch.undo()
    assert np.save is real_save
    assert main(args) == 0
    assert len([p for p in out.rglob("*") if p.is_file() and p.suffix != ".json"]) == 2 * 18
