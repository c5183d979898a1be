"""`garasam prepare davis | youtube-vos | mose`: miniature archives in the real layouts, converted to
the frames + masks layout and read back by the clip readers (sparse annotations kept sparse)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from garasam.cli import main
from garasam.errors import DataError
from garasam.video.clips import open_clips, read_vos_folder
from tests.data.test_prepare import _jpeg, _zip


def _ids_png(ids: tuple[int, ...], size=(24, 32)) -> bytes:
    labels = np.zeros(size, np.uint8)
    for k, obj in enumerate(ids):
        labels[2 + 6 * k : 6 + 6 * k, 4:20] = obj
    image = Image.fromarray(labels, mode="P")
    image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [255] * 756)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _prepare(*args: str) -> int:
    return main(["prepare", *args, "--workers", "0"])


def test_davis_from_its_trainval_zip_by_imagesets(tmp_path: Path) -> None:
    members = {
        "DAVIS/ImageSets/2017/train.txt": b"bear\n",
        "DAVIS/ImageSets/2017/val.txt": b"dog\n",
    }
    for sequence, seed in (("bear", 0), ("dog", 10)):
        for t in range(3):
            members[f"DAVIS/JPEGImages/480p/{sequence}/{t:05d}.jpg"] = _jpeg(seed + t)
            members[f"DAVIS/Annotations/480p/{sequence}/{t:05d}.png"] = _ids_png((1, 2))
    archive = _zip(tmp_path / "DAVIS-2017-trainval-480p.zip", members)
    out = tmp_path / "davis"
    assert _prepare("davis", "--src", str(archive), "--out", str(out)) == 0
    manifest = json.loads((out / "prepare.json").read_text())
    assert manifest["readers"] == {"train": f"frames:{out}/train", "val": f"frames:{out}/val"}
    clips = open_clips(manifest["readers"]["val"])
    assert [c.name for c in clips] == ["dog"] and len(clips[0]) == 3
    assert sorted(clips[0].masks(2)) == [1, 2]


def _vos_members(split: str, sparse: bool) -> dict[str, bytes]:
    members = {}
    for video, seed in (("0a1b", 0), ("ff03", 20)):
        for t in (0, 5, 10, 15):
            members[f"{split}/JPEGImages/{video}/{t:05d}.jpg"] = _jpeg(seed + t)
            if not sparse or t in (0, 10):
                members[f"{split}/Annotations/{video}/{t:05d}.png"] = _ids_png((1,) if t == 0 else (1, 3))
    meta = {
        "videos": {
            v: {
                "objects": {
                    "1": {"category": "cat", "frames": ["00000", "00010"]},
                    "3": {"frames": ["00010"]},
                }
            }
            for v in ("0a1b", "ff03")
        }
    }
    members[f"{split}/meta.json"] = json.dumps(meta).encode()
    return members


def test_youtube_vos_keeps_sparse_annotations_and_its_meta(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "train.zip", _vos_members("train", sparse=True))
    out = tmp_path / "ytvos"
    assert _prepare("youtube-vos", "--src", str(archive), "--out", str(out)) == 0
    clips = open_clips(f"frames:{out}/train")
    assert [c.name for c in clips] == ["0a1b", "ff03"]
    assert len(clips[0]) == 4 and sorted(clips[0].annotations) == [0, 2]  # frames 00000 and 00010
    assert json.loads((out / "train" / "meta.json").read_text())["videos"]["0a1b"]["objects"]["3"][
        "frames"
    ] == ["00010"]


def test_mose_from_a_tar_archive(tmp_path: Path) -> None:
    archive = tmp_path / "valid.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        for name, data in _vos_members("valid", sparse=False).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            handle.addfile(info, io.BytesIO(data))
    out = tmp_path / "mose"
    assert _prepare("mose", "--src", str(archive), "--out", str(out)) == 0
    assert [len(c) for c in open_clips(f"frames:{out}/valid")] == [4, 4]


def test_the_vos_reader_checks_meta_json(tmp_path: Path) -> None:
    for name, data in _vos_members("train", sparse=True).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    assert len(read_vos_folder(tmp_path / "train")) == 2
    meta = json.loads((tmp_path / "train" / "meta.json").read_text())
    meta["videos"]["0a1b"]["objects"]["7"] = {"frames": ["00010"]}
    (tmp_path / "train" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="object 7 of meta.json is not in this mask"):
        read_vos_folder(tmp_path / "train")
    with pytest.raises(DataError, match="holds JPEGImages/ and Annotations/"):
        read_vos_folder(tmp_path)


def test_a_video_with_a_stray_mask_is_left_out_and_named(tmp_path: Path, capsys) -> None:
    members = _vos_members("valid", sparse=True)
    members["valid/Annotations/0a1b/00099.png"] = _ids_png((1,))
    archive = _zip(tmp_path / "valid.zip", members)
    out = tmp_path / "ytvos"
    assert _prepare("youtube-vos", "--src", str(archive), "--out", str(out)) == 0
    assert "valid/0a1b: masks without a frame (00099)" in capsys.readouterr().out
    assert [c.name for c in open_clips(f"frames:{out}/valid")] == ["ff03"]
