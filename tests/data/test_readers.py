"""Readers: pairing, object selection, format conversion and every kind of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from garasam.data.images import load_image, save_masks
from garasam.data.readers import CityscapesReader, CocoReader, FolderReader, RobustSegReader, open_dataset
from garasam.errors import ConfigError, DataError
from tests.data.conftest import box_mask, random_image, write_image

H, W = 24, 32


def make_robustseg(root: Path, stems: list[str], degraded: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """clear/, masks/ and degraded folders; the image of stem i is filled with value i*10 to tell them apart."""
    images = {}
    for i, stem in enumerate(stems):
        image = np.full((H, W, 3), i * 10, np.uint8)
        images[stem] = image
        write_image(root / "clear" / f"{stem}.png", image)
        for folder in degraded:
            write_image(root / folder / f"{stem}.png", 255 - image)
        save_masks(
            root / "masks" / f"{stem}.npy", [box_mask(H, W, 0, 0, 5 + i, 5), box_mask(H, W, 10, 10, 20, 30)]
        )
    return images


# -- robustseg --------------------------------------------------------------------------------------------
def test_robustseg_pairs_by_name_not_sorted_index(tmp_path: Path) -> None:
    images = make_robustseg(tmp_path, ["b", "a10", "a9"])
    write_image(
        tmp_path / "clear" / "0extra.png", random_image()
    )  # sorts first, has no masks: shifts indices
    reader = open_dataset(f"robustseg:{tmp_path}")
    assert len(reader) == 3
    for sample in reader:
        stem = sample.meta["image_id"]
        np.testing.assert_array_equal(sample.image, images[stem])
        position = ["b", "a10", "a9"].index(stem)
        assert sample.masks[0].sum() == (5 + position) * 5  # each image got its own masks
        assert sample.meta["object_ids"] == [0, 1]
        assert sample.meta["dataset"] == "robustseg"
        assert sample.meta["source"].endswith(f"{stem}.png")
    assert [p.reason for p in reader.problems] == [f"no mask file {tmp_path / 'masks' / '0extra.npy'}"]


def test_robustseg_degradation_folders_and_warped_masks(tmp_path: Path) -> None:
    make_robustseg(tmp_path, ["x", "y"], degraded=("fog", "elastic_transform"))
    save_masks(tmp_path / "masks_elastic_transform" / "x.npy", [box_mask(H, W, 1, 1, 3, 3)])
    save_masks(tmp_path / "masks_elastic_transform" / "y.npy", [box_mask(H, W, 1, 1, 4, 4)])
    reader = RobustSegReader(tmp_path)
    assert reader.available_degradations() == ["elastic_transform", "fog"]
    fog = reader.with_options(degradation="fog")
    assert fog[0].image[0, 0, 0] == 255 and len(fog[0].masks) == 2  # degraded image, clean masks
    elastic = open_dataset(f"robustseg:{tmp_path}?degradation=elastic_transform")
    assert [m.sum() for m in elastic[0].masks] == [4]  # masks from masks_elastic_transform/
    with pytest.raises(DataError, match="no image folder for degradation 'snow'.*fog"):
        RobustSegReader(tmp_path, degradation="snow")


def test_robustseg_missing_pairs_are_problems_or_errors(tmp_path: Path) -> None:
    make_robustseg(tmp_path, ["a", "b", "c"])
    (tmp_path / "masks" / "b.npy").unlink()
    save_masks(tmp_path / "masks" / "d.npy", [box_mask(H, W, 0, 0, 3, 3)])
    reader = RobustSegReader(tmp_path)
    assert [reader.image_id(i) for i in range(len(reader))] == ["a", "c"]
    reasons = sorted(str(p) for p in reader.problems)
    assert len(reasons) == 2
    assert "b.png: no mask file" in reasons[0] and "d.npy: no image d.*" in reasons[1]
    with pytest.raises(DataError, match=r"b\.png: no mask file"):
        RobustSegReader(tmp_path, strict=True)


def test_empty_dataset_names_path_and_expectation(tmp_path: Path) -> None:
    (tmp_path / "clear").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(
        DataError, match=rf"{tmp_path}: no usable items for the robustseg reader \(expected clear/"
    ):
        RobustSegReader(tmp_path)
    with pytest.raises(
        DataError, match=r"clear/clear: no image folder for degradation 'clean' \(found: none; expected"
    ):
        RobustSegReader(tmp_path / "clear")


def test_bad_items_are_skipped_and_counted_or_raise_when_strict(tmp_path: Path) -> None:
    make_robustseg(tmp_path, ["good", "trunc", "garbage", "wrongsize", "empty"])
    data = (tmp_path / "clear" / "trunc.png").read_bytes()
    (tmp_path / "clear" / "trunc.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "clear" / "garbage.png").write_bytes(b"not an image")
    save_masks(tmp_path / "masks" / "wrongsize.npy", [box_mask(H + 1, W, 0, 0, 4, 4)])
    save_masks(tmp_path / "masks" / "empty.npy", np.zeros((2, H, W), bool))
    reader = RobustSegReader(tmp_path)
    assert len(reader) == 5
    samples = list(reader)
    assert [s.meta["image_id"] for s in samples] == ["good"]
    text = "\n".join(str(p) for p in reader.problems)
    assert "trunc.png: cannot read image" in text
    assert "garbage.png: cannot read image" in text
    assert "wrongsize.npy: mask size 32x25 differs from image size 32x24" in text
    assert "empty.npy: no non-empty object mask" in text
    assert reader.get(1) is None
    with pytest.raises(DataError, match="cannot read image"):
        reader[1]
    strict = RobustSegReader(tmp_path, strict=True)
    with pytest.raises(DataError):
        list(strict)
    assert "1 problem" not in reader.problem_summary() and "problem(s), first" in reader.problem_summary()


def test_whole_dataset_unreadable_is_an_error(tmp_path: Path) -> None:
    make_robustseg(tmp_path, ["a", "b"])
    for stem in ("a", "b"):
        (tmp_path / "clear" / f"{stem}.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="none of the 2 items"):
        list(RobustSegReader(tmp_path))


def test_empty_objects_dropped_and_object_selection(tmp_path: Path) -> None:
    write_image(tmp_path / "clear" / "a.png", random_image(H, W))
    masks = [
        box_mask(H, W, 0, 0, 2, 2),
        np.zeros((H, W), bool),
        box_mask(H, W, 5, 5, 15, 15),
        box_mask(H, W, 0, 20, 5, 25),
    ]
    save_masks(tmp_path / "masks" / "a.npy", masks)
    reader = RobustSegReader(tmp_path)
    assert reader[0].meta["object_ids"] == [0, 2, 3]  # the empty mask 1 is dropped...
    assert [(p.item.endswith("a.npy object 1"), p.reason) for p in reader.problems] == [
        (True, "empty mask, object dropped")
    ]  # ...and reported
    assert RobustSegReader(tmp_path, objects="largest")[0].meta["object_ids"] == [2]
    assert RobustSegReader(tmp_path, max_objects=2)[0].meta["object_ids"] == [
        2,
        3,
    ]  # largest two, original order
    assert RobustSegReader(tmp_path, min_area=25)[0].meta["object_ids"] == [2, 3]
    too_big = RobustSegReader(tmp_path, min_area=1000)
    assert too_big.get(0) is None and "no object with area >= min_area=1000" in str(too_big.problems[-1])
    with pytest.raises(ConfigError):
        RobustSegReader(tmp_path, objects="smallest")


# -- image formats ----------------------------------------------------------------------------------------
def test_load_image_converts_every_mode_to_rgb_uint8(tmp_path: Path) -> None:
    gray = np.arange(H * W, dtype=np.uint8).reshape(H, W)
    write_image(tmp_path / "gray.png", gray)
    np.testing.assert_array_equal(load_image(tmp_path / "gray.png"), np.repeat(gray[..., None], 3, 2))
    rgba = np.dstack([random_image(), np.full((H, W), 7, np.uint8)])
    write_image(tmp_path / "rgba.png", rgba)
    np.testing.assert_array_equal(load_image(tmp_path / "rgba.png"), rgba[..., :3])
    deep = (np.arange(H * W, dtype=np.uint16).reshape(H, W) * 80).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    out = load_image(tmp_path / "deep.png")
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    np.testing.assert_array_equal(out[..., 0], np.rint(deep / 257).astype(np.uint8))
    palette = Image.fromarray(gray % 4).convert("P")
    palette.save(tmp_path / "palette.png")
    assert load_image(tmp_path / "palette.png").shape == (H, W, 3)
    with pytest.raises(DataError, match="missing.png: image file not found"):
        load_image(tmp_path / "missing.png")


def test_exif_rotated_jpeg_is_shown_upright(tmp_path: Path) -> None:
    stored = np.zeros((H, W, 3), np.uint8)
    stored[:, : W // 2] = 255  # left half white as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(stored).save(tmp_path / "rot.jpg", exif=exif, quality=100)
    shown = load_image(tmp_path / "rot.jpg")
    assert shown.shape == (W, H, 3)  # displayed orientation: portrait
    assert shown[: W // 2 - 2].mean() > 200 and shown[W // 2 + 2 :].mean() < 50  # left half became the top
    # a mask drawn in the displayed orientation matches the image
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "images" / "rot.jpg").write_bytes((tmp_path / "rot.jpg").read_bytes())
    write_image(
        tmp_path / "data" / "masks" / "rot.png", (box_mask(W, H, 0, 0, W // 2, H) * 255).astype(np.uint8)
    )
    sample = FolderReader(tmp_path / "data")[0]
    assert sample.masks[0].shape == shown.shape[:2]


# -- coco -------------------------------------------------------------------------------------------------
def _coco(tmp_path: Path, images_dir: Path) -> Path:
    first = random_image(H, W, seed=1)
    write_image(images_dir / "one.png", first)
    write_image(images_dir / "two.png", random_image(H, W, seed=2))
    rle = mask_utils.encode(np.asfortranarray(box_mask(H, W, 2, 2, 6, 6).astype(np.uint8)))
    rle["counts"] = rle["counts"].decode()
    uncompressed = {"size": [H, W], "counts": [H * 10, H * 2, H * (W - 12)]}  # columns 10, 11
    data = {
        "images": [
            {"id": 1, "file_name": "one.png", "height": H, "width": W},
            {"id": 2, "file_name": "two.png", "height": H, "width": W},
            {"id": 3, "file_name": "three.png", "height": H, "width": W},  # no annotations: not an item
        ],
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 5,
                "segmentation": [[0, 0, 8, 0, 8, 8, 0, 8]],
                "iscrowd": 0,
            },
            {"id": 11, "image_id": 1, "category_id": 6, "segmentation": rle, "iscrowd": 0},
            {"id": 12, "image_id": 1, "category_id": 6, "segmentation": uncompressed, "iscrowd": 1},
            {"id": 13, "image_id": 2, "category_id": 7, "segmentation": uncompressed, "iscrowd": 0},
        ],
        "categories": [{"id": 5, "name": "a"}, {"id": 6, "name": "b"}, {"id": 7, "name": "c"}],
    }
    path = tmp_path / "ann" / "instances.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def test_coco_polygons_rle_and_crowd(tmp_path: Path) -> None:
    path = _coco(tmp_path, tmp_path / "ann" / "images")  # images/ next to the json
    reader = open_dataset(f"coco:{path}")
    assert len(reader) == 2
    one = reader[0]
    assert one.meta["object_ids"] == [10, 11] and one.meta["category_ids"] == [5, 6]  # crowd 12 skipped
    assert one.masks[0][:8, :8].all() and one.masks[0].sum() == 64
    np.testing.assert_array_equal(one.masks[1], box_mask(H, W, 2, 2, 6, 6))
    two = reader[1]
    np.testing.assert_array_equal(two.masks[0], box_mask(H, W, 0, 10, H, 12))
    with_crowd = CocoReader(path, include_crowd=True)
    assert with_crowd[0].meta["object_ids"] == [10, 11, 12]


def test_coco_image_resolution_rules(tmp_path: Path) -> None:
    elsewhere = tmp_path / "pictures"
    path = _coco(tmp_path, elsewhere)
    with pytest.raises(DataError, match="no usable items"):
        CocoReader(path)  # not next to the json, nor in images/
    assert len(CocoReader(path, images=elsewhere)) == 2
    assert len(open_dataset(f"coco:{path}?images={elsewhere}")) == 2
    with pytest.raises(DataError, match="one.png: image file not found"):
        CocoReader(path, strict=True)


def test_coco_lvis_entries_use_coco_url(tmp_path: Path) -> None:
    write_image(tmp_path / "val2017" / "000001.png", random_image())
    data = {
        "images": [
            {"id": 1, "coco_url": "http://images.example.org/val2017/000001.png", "height": H, "width": W}
        ],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 4, 0, 4, 4]]}],
    }
    path = tmp_path / "annotations" / "lvis_v1_val.json"
    path.parent.mkdir()
    path.write_text(json.dumps(data))
    sample = CocoReader(path)[0]  # found in ../val2017/ (the folder of coco_url)
    assert sample.meta["image_id"] == "000001"


def test_coco_bad_json_and_size_mismatch(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [], "info": 1}')
    with pytest.raises(DataError, match=r"bad\.json: not a COCO/LVIS annotation file"):
        open_dataset(f"coco:{bad}")
    bad.write_text("{oops")
    with pytest.raises(DataError, match=r"bad\.json: cannot read JSON"):
        CocoReader(bad)
    path = _coco(tmp_path, tmp_path / "ann")
    data = json.loads(path.read_text())
    data["images"][0]["height"] = H + 4
    path.write_text(json.dumps(data))
    reader = CocoReader(path)
    assert [s.meta["image_id"] for s in reader] == ["two"]
    assert "differs from the annotation size 32x28" in str(reader.problems[0])


# -- folder -----------------------------------------------------------------------------------------------
def test_folder_same_dir_binary_masks(tmp_path: Path) -> None:
    write_image(tmp_path / "1.jpg", random_image())
    write_image(tmp_path / "1.png", (box_mask(H, W, 0, 0, 4, 4) * 255).astype(np.uint8))
    write_image(tmp_path / "2.jpg", random_image())
    write_image(tmp_path / "2.png", box_mask(H, W, 0, 0, 4, 8).astype(np.uint8))  # 0/1 mask
    write_image(tmp_path / "3.jpg", random_image())  # no mask
    reader = open_dataset(f"folder:{tmp_path}")
    assert [reader.image_id(i) for i in range(len(reader))] == ["1", "2"]
    assert [s.masks[0].sum() for s in reader] == [16, 32]
    assert "3.jpg: no mask file" in str(reader.problems[0])


def test_folder_layouts_antialiased_and_label_masks(tmp_path: Path) -> None:
    soft = (box_mask(H, W, 0, 0, 10, 10) * 255).astype(np.uint8)
    soft[10, :10] = 100  # anti-aliased edge below one half: background
    soft[:10, 10] = 200  # above one half: object
    write_image(tmp_path / "im" / "a.jpg", random_image())
    write_image(tmp_path / "gt" / "a.png", soft)
    labels = np.zeros((H, W), np.uint8)
    labels[:5, :5], labels[10:, 10:] = 1, 2
    write_image(tmp_path / "im" / "b.jpg", random_image())
    write_image(tmp_path / "gt" / "b.png", labels)
    colour = np.zeros((H, W, 3), np.uint8)
    colour[:3, :3] = (255, 0, 0)
    colour[5:9, 5:9] = (0, 0, 255)
    write_image(tmp_path / "im" / "c.jpg", random_image())
    write_image(tmp_path / "gt" / "c.png", colour)
    reader = FolderReader(tmp_path)  # im/ + gt/ found automatically (DIS)
    a, b, c = reader[0], reader[1], reader[2]
    assert len(a.masks) == 1 and a.masks[0].sum() == 110
    assert b.meta["object_ids"] == [1, 2] and [m.sum() for m in b.masks] == [25, (H - 10) * (W - 10)]
    assert sorted(m.sum() for m in c.masks) == [9, 16]


def test_folder_options_suffix_and_dirs(tmp_path: Path) -> None:
    write_image(tmp_path / "pics" / "x.png", random_image())
    write_image(tmp_path / "pics" / "x_mask.png", (box_mask(H, W, 0, 0, 2, 2) * 255).astype(np.uint8))
    reader = open_dataset(f"folder:{tmp_path}?image_dir=pics&mask_suffix=_mask.png")
    assert len(reader) == 1 and reader[0].masks[0].sum() == 4
    write_image(tmp_path / "pics" / "y.png", random_image(H + 2, W))
    write_image(tmp_path / "pics" / "y_mask.png", np.full((H, W), 255, np.uint8))
    reader = FolderReader(tmp_path, image_dir="pics", mask_suffix="_mask.png")
    assert [s.meta["image_id"] for s in reader] == ["x"]
    assert "mask size 32x24 differs from image size 32x26" in str(reader.problems[0])


# -- cityscapes -------------------------------------------------------------------------------------------
def test_cityscapes_instance_ids(tmp_path: Path) -> None:
    ids = np.zeros((H, W), np.uint16)
    ids[:, :] = 7  # road (stuff): ignored
    ids[2:6, 2:6] = 26000  # car #0
    ids[10:20, 10:20] = 26001  # car #1
    ids[0:2, 20:30] = 24  # person crowd region without instance id: ignored
    mask_path = tmp_path / "gtFine" / "val" / "city" / "city_000_000_gtFine_instanceIds.png"
    mask_path.parent.mkdir(parents=True)
    Image.fromarray(ids).save(mask_path)
    write_image(tmp_path / "leftImg8bit" / "val" / "city" / "city_000_000_leftImg8bit.png", random_image())
    sample = open_dataset(f"cityscapes:{tmp_path}")[0]
    assert sample.meta["image_id"] == "city_000_000"
    assert sample.meta["object_ids"] == [26000, 26001] and sample.meta["category_ids"] == [26, 26]
    assert [m.sum() for m in sample.masks] == [16, 100]


def test_cityscapes_plain_bdd_and_custom_rule(tmp_path: Path) -> None:
    plain = np.zeros((H, W), np.uint8)
    plain[:4, :4], plain[5:8, 5:8], plain[20:, 20:] = 3, 9, 255
    Image.fromarray(plain).save(tmp_path / "p_ids.png")
    write_image(tmp_path / "p.jpg", random_image())
    reader = CityscapesReader(
        tmp_path, mask_glob="*_ids.png", image_rule="_ids.png=>.jpg", ignore_ids=(0, 255)
    )
    assert reader[0].meta["object_ids"] == [3, 9]
    spec = f"cityscapes:{tmp_path}?mask_glob=*_ids.png&image_rule=_ids.png=>.jpg&ignore_ids=0"
    assert open_dataset(spec)[0].meta["object_ids"] == [3, 9, 255]

    bdd = tmp_path / "bdd"
    bitmask = np.zeros((H, W, 4), np.uint8)
    bitmask[:4, :4] = (3, 0, 1, 2)  # class 3, instance 258
    bitmask[6:9, 6:9] = (4, 2, 0, 7)  # crowd: skipped
    bitmask[10:12, 10:12] = (5, 8, 0, 9)  # truncated only: kept
    mask_path = bdd / "labels" / "ins_seg" / "bitmasks" / "val" / "f1.png"
    mask_path.parent.mkdir(parents=True)
    Image.fromarray(bitmask, mode="RGBA").save(mask_path)
    write_image(bdd / "images" / "10k" / "val" / "f1.jpg", random_image())
    sample = CityscapesReader(bdd, mask_glob="labels/ins_seg/bitmasks/**/*.png")[0]
    assert sample.meta["object_ids"] == [9, 258] and sample.meta["category_ids"] == [5, 3]
    assert [m.sum() for m in sample.masks] == [4, 16]


def test_cityscapes_missing_image_and_bad_rule(tmp_path: Path) -> None:
    Image.fromarray(np.full((H, W), 1000, np.uint16)).save(tmp_path / "a_instanceIds.png")
    with pytest.raises(DataError, match="no usable items.*a_instanceIds.png: no image found"):
        CityscapesReader(tmp_path)
    write_image(tmp_path / "a.png", random_image())
    assert CityscapesReader(tmp_path)[0].meta["object_ids"] == [1000]  # generic rule: same stem
    with pytest.raises(ConfigError, match="old=>new"):
        CityscapesReader(tmp_path, image_rule="nonsense")


# -- open_dataset -----------------------------------------------------------------------------------------
def test_open_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="robustseg, coco, folder, cityscapes"):
        open_dataset(f"voc:{tmp_path}")
    with pytest.raises(DataError, match="expected <reader>:<path>"):
        open_dataset(str(tmp_path))
    with pytest.raises(ConfigError, match="unknown option 'colour'"):
        open_dataset(f"folder:{tmp_path}?colour=red")
    with pytest.raises(ConfigError, match="option max_objects"):
        open_dataset(f"folder:{tmp_path}?max_objects=many")
    with pytest.raises(DataError, match="folder not found"):
        open_dataset(f"robustseg:{tmp_path / 'nope'}")


def test_open_dataset_options_override_keywords(tmp_path: Path) -> None:
    make_robustseg(tmp_path, ["a"])
    reader = open_dataset(f"robustseg:{tmp_path}?objects=largest&max_objects=none&strict=true", strict=False)
    assert reader.strict is True and reader.objects == "largest" and reader.max_objects is None
    assert len(reader[0].masks) == 1
    assert [s.meta["image_id"] for s in reader[0:1]] == ["a"]  # slices work like any Sequence
