"""`garasam prepare`: miniature archives in each dataset's real layout, converted and read back."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from garasam.cli import main
from garasam.data.readers import open_dataset


def _jpeg(seed: int, size=(24, 32)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _mask_png(size=(24, 32), mode="L") -> bytes:
    mask = np.zeros(size, np.uint8)
    mask[4:14, 6:20] = 255
    buffer = io.BytesIO()
    image = Image.fromarray(mask)
    if mode == "RGBA":  # BDD bitmask: R class, G attributes, B*256+A instance id
        rgba = np.zeros((*size, 4), np.uint8)
        rgba[4:14, 6:20] = (3, 0, 0, 1)
        rgba[16:22, 2:9] = (5, 0, 0, 2)
        image = Image.fromarray(rgba, "RGBA")
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _npy(size=(24, 32)) -> bytes:
    masks = np.zeros((2, *size), bool)
    masks[0, 2:10, 3:12] = True
    masks[1, 12:20, 15:30] = True
    buffer = io.BytesIO()
    np.save(buffer, masks)
    return buffer.getvalue()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as handle:
        for name, data in members.items():
            handle.writestr(name, data)
    return path


def _prepare(*args: str) -> int:
    return main(["prepare", *args, "--workers", "0"])


def _coco_json(images: list[tuple[int, str, str | None]]) -> bytes:
    """COCO annotations: (id, file_name, coco_url) images, one polygon object each."""
    data = {
        "images": [
            {"id": i, "file_name": name, "height": 24, "width": 32, **({"coco_url": url} if url else {})}
            for i, name, url in images
        ],
        "annotations": [
            {
                "id": 100 + i,
                "image_id": i,
                "category_id": 1,
                "iscrowd": 0,
                "area": 80.0,
                "bbox": [4, 4, 10, 8],
                "segmentation": [[4, 4, 14, 4, 14, 12, 4, 12]],
            }
            for i, _, _ in images
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    return json.dumps(data).encode()


def test_robust_seg_from_its_released_zips(tmp_path: Path) -> None:
    src = tmp_path / "dl"
    for split in ("train", "test"):
        _zip(src / split / "clear.zip", {f"clear/{split}_{i}.jpg": _jpeg(i) for i in range(2)})
        _zip(src / split / "masks.zip", {f"masks/{split}_{i}.npy": _npy() for i in range(2)})
    sources = [str(p) for p in sorted(src.rglob("*.zip"))]
    assert _prepare("robust-seg", "--src", *sources, "--out", str(tmp_path / "out")) == 0
    manifest = json.loads((tmp_path / "out" / "prepare.json").read_text())
    assert manifest["splits"]["train"]["images"] == 2 and manifest["splits"]["test"]["images"] == 2
    reader = open_dataset(manifest["readers"]["train"])
    sample = reader[0]
    assert len(reader) == 2 and len(sample.masks) == 2
    expected = np.asarray(Image.open(io.BytesIO(_jpeg(0))).convert("RGB"))
    np.testing.assert_array_equal(sample.image, expected)


def test_coco_and_an_annotation_file_without_its_images(tmp_path: Path, capsys) -> None:
    annotations = {
        "annotations/instances_val2017.json": _coco_json([(1, "000001.jpg", None), (2, "000002.jpg", None)]),
        "annotations/instances_train2017.json": _coco_json([(3, "000003.jpg", None)]),
    }
    archives = [
        _zip(tmp_path / "annotations_trainval2017.zip", annotations),
        _zip(tmp_path / "val2017.zip", {"val2017/000001.jpg": _jpeg(1), "val2017/000002.jpg": _jpeg(2)}),
    ]
    assert _prepare("coco2017", "--src", *map(str, archives), "--out", str(tmp_path / "out")) == 0
    manifest = json.loads((tmp_path / "out" / "prepare.json").read_text())
    assert list(manifest["readers"]) == ["val"] and manifest["splits"]["val"]["images"] == 2
    assert "instances_train2017.json: none of its 1 images is in the sources" in manifest["problems"][0]
    reader = open_dataset(manifest["readers"]["val"])
    assert len(reader) == 2 and reader[0].masks[0].sum() > 0
    assert "read val with --data coco:" in capsys.readouterr().out


def test_an_image_missing_from_the_archives_is_named(tmp_path: Path, capsys) -> None:
    archives = [
        _zip(
            tmp_path / "annotations_trainval2017.zip",
            {
                "annotations/instances_val2017.json": _coco_json(
                    [(1, "000001.jpg", None), (2, "000002.jpg", None)]
                )
            },
        ),
        _zip(tmp_path / "val2017.zip", {"val2017/000001.jpg": _jpeg(1)}),
    ]
    assert _prepare("coco2017", "--src", *map(str, archives), "--out", str(tmp_path / "out")) == 2
    assert "val2017/000002.jpg is missing (1 of the 2 images" in capsys.readouterr().err


def test_lvis_finds_its_images_in_the_coco_folders_its_urls_name(tmp_path: Path) -> None:
    url = "http://images.cocodataset.org/{}/{}"
    lvis = _coco_json(
        [(1, "", url.format("train2017", "000001.jpg")), (2, "", url.format("val2017", "000002.jpg"))]
    )
    archives = [
        _zip(tmp_path / "lvis_v1_val.json.zip", {"lvis_v1_val.json": lvis}),
        _zip(tmp_path / "train2017.zip", {"train2017/000001.jpg": _jpeg(1)}),
        _zip(tmp_path / "val2017.zip", {"val2017/000002.jpg": _jpeg(2)}),
    ]
    assert _prepare("lvis", "--src", *map(str, archives), "--out", str(tmp_path / "out")) == 0
    manifest = json.loads((tmp_path / "out" / "prepare.json").read_text())
    assert len(open_dataset(manifest["readers"]["val"])) == 2
    assert (tmp_path / "out" / "train2017" / "000001.jpg").is_file()


def test_msra10k_with_a_damaged_member_skipped_or_refused(tmp_path: Path, capsys) -> None:
    members = {f"MSRA10K_Imgs_GT/Imgs/{i}.jpg": _jpeg(i) for i in range(3)}
    members |= {f"MSRA10K_Imgs_GT/Imgs/{i}.png": _mask_png() for i in range(3)}
    members["MSRA10K_Imgs_GT/Imgs/2.jpg"] = _jpeg(2)[:200]  # a truncated download
    archive = _zip(tmp_path / "MSRA10K_Imgs_GT.zip", members)
    assert _prepare("msra10k", "--src", str(archive), "--out", str(tmp_path / "out")) == 0
    manifest = json.loads((tmp_path / "out" / "prepare.json").read_text())
    assert manifest["splits"]["all"]["images"] == 2 and manifest["skipped"] == 1
    assert "MSRA10K_Imgs_GT/Imgs/2.jpg: damaged" in manifest["problems"][0]
    reader = open_dataset(manifest["readers"]["all"])
    assert len(reader) == 2 and reader[0].masks[0].sum() == 10 * 14
    assert not (tmp_path / "out" / "all" / "masks" / "2.png").exists()  # nothing of a damaged item
    capsys.readouterr()
    assert _prepare("msra10k", "--src", str(archive), "--out", str(tmp_path / "strict"), "--strict") == 2
    assert "MSRA10K_Imgs_GT/Imgs/2.jpg: damaged" in capsys.readouterr().err


def test_thinobject5k_from_a_tar_archive_with_its_official_split(tmp_path: Path) -> None:
    members = {f"ThinObject5K/images/obj{i}.jpg": _jpeg(i) for i in range(3)}
    members |= {f"ThinObject5K/masks/obj{i}.png": _mask_png() for i in range(3)}
    members |= {
        "ThinObject5K/list/train.txt": b"obj0.jpg\nobj1.jpg\n",
        "ThinObject5K/list/test.txt": b"obj2.jpg\n",
    }
    archive = tmp_path / "ThinObject5K.tar.gz"
    with tarfile.open(archive, "w:gz") as handle:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            handle.addfile(info, io.BytesIO(data))
    assert _prepare("thinobject5k", "--src", str(archive), "--out", str(tmp_path / "out")) == 0
    manifest = json.loads((tmp_path / "out" / "prepare.json").read_text())
    assert manifest["splits"]["train"]["images"] == 2 and manifest["splits"]["test"]["images"] == 1
    assert len(open_dataset(manifest["readers"]["test"])) == 1


def test_bdd100k_bitmasks_read_back_as_instances(tmp_path: Path) -> None:
    archives = [
        _zip(tmp_path / "bdd100k_images_10k.zip", {"bdd100k/images/10k/val/abc.jpg": _jpeg(5)}),
        _zip(
            tmp_path / "bdd100k_ins_seg_labels_trainval.zip",
            {"bdd100k/labels/ins_seg/bitmasks/val/abc.png": _mask_png(mode="RGBA")},
        ),
    ]
    assert _prepare("bdd100k", "--src", *map(str, archives), "--out", str(tmp_path / "out")) == 0
    manifest = json.loads((tmp_path / "out" / "prepare.json").read_text())
    sample = open_dataset(manifest["readers"]["val"])[0]
    assert sorted(int(m.sum()) for m in sample.masks) == [6 * 7, 10 * 14]


def test_an_interrupted_run_resumes_and_keeps_what_it_wrote(tmp_path: Path, monkeypatch) -> None:
    from garasam.data.prepare import convert as cmd

    members = {f"MSRA10K_Imgs_GT/Imgs/{i}.jpg": _jpeg(i) for i in range(4)}
    members |= {f"MSRA10K_Imgs_GT/Imgs/{i}.png": _mask_png() for i in range(4)}
    archive = _zip(tmp_path / "MSRA10K_Imgs_GT.zip", members)
    real = cmd.atomic_write_bytes
    calls = {"n": 0}

    def dying(path, data):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 4:  # killed while writing the second item's image
            raise KeyboardInterrupt
        real(path, data)

    monkeypatch.setattr(cmd, "atomic_write_bytes", dying)
    out = tmp_path / "out"
    assert _prepare("msra10k", "--src", str(archive), "--out", str(out)) != 0  # the CLI reports the interrupt
    first = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert len(first) == 3 and not (out / "prepare.json").exists()  # mask, image, then a mask
    monkeypatch.setattr(cmd, "atomic_write_bytes", real)
    assert _prepare("msra10k", "--src", str(archive), "--out", str(out)) == 0
    manifest = json.loads((out / "prepare.json").read_text())
    assert manifest["splits"]["all"] == {"images": 4, "written": 5, "existing": 3}
    assert all(p.stat().st_mtime_ns == t for p, t in first.items())
    assert not list(out.rglob("*.tmp")) and len(open_dataset(manifest["readers"]["all"])) == 4


def test_without_sources_it_says_what_to_download(tmp_path: Path, capsys) -> None:
    assert main(["prepare", "coco2017", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "https://cocodataset.org/#download" in err and "annotations_trainval2017.zip" in err


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("notes.txt", b"not an archive", "neither a folder nor a zip or tar archive"),
        ("missing.zip", None, "no such file or folder"),
    ],
)
def test_a_source_that_is_not_an_archive_is_named(tmp_path: Path, capsys, name, content, message) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert _prepare("msra10k", "--src", str(path), "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert name in err and message in err


def _png(seed: int, size=(24, 32)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_acdc_instances_from_its_detection_annotations(tmp_path: Path) -> None:
    frames = [
        f"{cond}/val/GOPR0{i}/GOPR0{i}_frame_00000{i}_rgb_anon.png" for i, cond in enumerate(("fog", "night"))
    ]
    annotations = json.loads(_coco_json([(i, name, None) for i, name in enumerate(frames)]))
    archives = [
        _zip(
            tmp_path / "rgb_anon_trainvaltest.zip", {f"rgb_anon/{f}": _png(i) for i, f in enumerate(frames)}
        ),
        _zip(
            tmp_path / "gt_detection_trainval.zip",
            {"gt_detection/instancesonly_val_gt_detection.json": json.dumps(annotations).encode()},
        ),
    ]
    assert _prepare("acdc", "--src", *map(str, archives), "--out", str(tmp_path / "out")) == 0
    manifest = json.loads((tmp_path / "out" / "prepare.json").read_text())
    reader = open_dataset(manifest["readers"]["val"])
    assert len(reader) == 2 and reader[1].masks[0].sum() > 0
    np.testing.assert_array_equal(reader[1].image, np.asarray(Image.open(io.BytesIO(_png(1)))))


def test_ndd20_polygons_become_masks(tmp_path: Path) -> None:
    labels = {
        "a.jpg123": {
            "filename": "a.jpg",
            "regions": [
                {
                    "shape_attributes": {
                        "name": "polygon",
                        "all_points_x": [4, 14, 14, 4],
                        "all_points_y": [4, 4, 12, 12],
                    },
                    "region_attributes": {"object": "dolphin"},
                },
            ],
        },
        "b.jpg99": {  # VIA 1: regions keyed by index; the second shape is not a polygon
            "filename": "b.jpg",
            "regions": {
                "0": {"shape_attributes": {"all_points_x": [1, 8, 8, 1], "all_points_y": [1, 1, 6, 6]}},
                "1": {"shape_attributes": {"name": "rect", "x": 1, "y": 1}},
            },
        },
        "c.jpg5": {"filename": "c.jpg", "regions": []},
    }
    archive = _zip(
        tmp_path / "NDD20.zip",
        {
            "NDD20/ABOVE/a.jpg": _jpeg(1),
            "NDD20/ABOVE/b.jpg": _jpeg(2),
            "NDD20/ABOVE/c.jpg": _jpeg(3),
            "NDD20/ABOVE_LABELS.json": json.dumps(labels).encode(),
        },
    )
    assert _prepare("ndd20", "--src", str(archive), "--out", str(tmp_path / "out")) == 0
    manifest = json.loads((tmp_path / "out" / "prepare.json").read_text())
    assert manifest["splits"]["above"]["images"] == 2 and "c.jpg has no polygon" in manifest["problems"][0]
    reader = open_dataset(manifest["readers"]["above"])
    masks = {reader[i].meta["image_id"]: reader[i].masks for i in range(len(reader))}
    assert len(masks["a"]) == 1 and masks["a"][0][4:13, 4:15].all() and masks["a"][0].sum() == 9 * 11
    assert len(masks["b"]) == 1 and masks["b"][0].sum() == 6 * 8


def test_a_member_name_cannot_write_outside_the_output(tmp_path: Path, capsys) -> None:
    frame = "../../escaped_rgb_anon.png"
    annotations = _coco_json([(1, frame, None)])
    archives = [
        _zip(tmp_path / "rgb_anon_trainvaltest.zip", {f"rgb_anon/{frame}": _png(1)}),
        _zip(
            tmp_path / "gt_detection_trainval.zip",
            {"gt_detection/instancesonly_val_gt_detection.json": annotations},
        ),
    ]
    out = tmp_path / "deep" / "out"
    assert _prepare("acdc", "--src", *map(str, archives), "--out", str(out), "--strict") == 2
    assert "outside the output folder" in capsys.readouterr().err
    assert not list(tmp_path.rglob("escaped_rgb_anon.png"))


def test_lis_dark_images_with_their_labels(tmp_path: Path) -> None:
    train = _coco_json([(1, "2.JPG", None), (2, "4.JPG", None)])
    test = _coco_json([(3, "6.JPG", None)])
    union = _coco_json([(1, "2.JPG", None), (2, "4.JPG", None), (3, "6.JPG", None)])
    members = {f"LIS/RGB-dark/JPEGImages/{n}.JPG": _jpeg(n) for n in (2, 4, 6)}
    members |= {"LIS/RGB-normal/JPEGImages/1.png": _png(1)}  # the normal-light images are not used
    members |= {
        "LIS/annotations/lis_coco_JPG_train+1.json": train,
        "LIS/annotations/lis_coco_JPG_test+1.json": test,
        "LIS/annotations/lis_coco_JPG_traintest+1.json": union,
        "LIS/annotations/lis_coco_png_train.json": train,
    }
    archive = _zip(tmp_path / "LIS.zip", members)
    assert _prepare("lis", "--src", str(archive), "--out", str(tmp_path / "out")) == 0
    manifest = json.loads((tmp_path / "out" / "prepare.json").read_text())
    assert set(manifest["readers"]) == {"train", "test"}
    assert manifest["splits"]["train"]["images"] == 2 and manifest["splits"]["test"]["images"] == 1
    reader = open_dataset(manifest["readers"]["test"])
    np.testing.assert_array_equal(reader[0].image, np.asarray(Image.open(io.BytesIO(_jpeg(6)))))


def test_an_unknown_split_names_the_ones_there(tmp_path: Path, capsys) -> None:
    members = {"ThinObject5K/images/a.jpg": _jpeg(1), "ThinObject5K/masks/a.png": _mask_png()}
    members["ThinObject5K/list/test.txt"] = b"a.jpg\n"
    archive = _zip(tmp_path / "ThinObject5K.zip", members)
    assert (
        _prepare("thinobject5k", "--src", str(archive), "--out", str(tmp_path / "out"), "--split", "val") == 2
    )
    assert "no split val in the sources; they hold test" in capsys.readouterr().err


def test_a_full_disk_while_unpacking_is_not_a_damaged_archive(tmp_path: Path, monkeypatch, capsys) -> None:
    """Issue 29, item 5: a full disk during a .tar was reported as a "damaged tar archive"."""
    import errno

    archive = tmp_path / "ThinObject5K.tar"
    with tarfile.open(archive, "w") as handle:
        info = tarfile.TarInfo("ThinObject5K/images/obj0.jpg")
        data = _jpeg(0)
        info.size = len(data)
        handle.addfile(info, io.BytesIO(data))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tarfile, "copyfileobj", full)
    assert _prepare("thinobject5k", "--src", str(archive), "--out", str(tmp_path / "out")) == 2
    error = capsys.readouterr().err
    assert "No space left on device" in error and "damaged" not in error
