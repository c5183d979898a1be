"""Fuzzing the readers and loaders (issue 13): random bytes, truncations, bit flips and structural edits
of valid images, masks, COCO files, RLE strings, SAM checkpoints, adapter weights and adapter configs.

Every case must end in a project error (`GarasamError`, naming the file where there is one) or in a
correct result, never in another exception, a hang (each case runs under an alarm) or a silently wrong
result. Where a format carries no checksum, "correct" is checked against an oracle: an RLE string that
is accepted decodes to exactly its runs; a bit-flipped checkpoint that still loads differs from the
original in at most the one number that holds the flipped bit.
"""

from __future__ import annotations

import copy
import io
import json
import math
import random
import signal
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import SamModel

from garasam.adapters import GaRAConfig, adapter_config, inject_adapters, load_adapters, save_adapters
from garasam.adapters.config import adapter_config_from_dict
from garasam.adapters.io import CONFIG_NAME, WEIGHTS_NAME
from garasam.data.coco_masks import check_runs, compressed_runs
from garasam.data.images import load_image, read_label_map
from garasam.data.readers import CocoReader, FolderReader
from garasam.errors import GarasamError
from garasam.models.build import build_sam
from garasam.models.checkpoint import save_sam
from garasam.models.registry import sam_config

SEED = 1234
CASE_SECONDS = 10  # one case taking longer is a hang


@contextmanager
def alarm(seconds: int = CASE_SECONDS) -> Iterator[None]:
    def hang(signum: int, frame: Any) -> None:
        raise TimeoutError(f"a case ran over {seconds} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def byte_mutations(data: bytes, rng: random.Random, flips: int, cuts: int, junk: int) -> Iterator[bytes]:
    """Bit flips (1 to 3 bits), truncations, and random byte strings, all of them different from `data`."""
    for _ in range(flips):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
        if bytes(mutated) != data:
            yield bytes(mutated)
    for _ in range(cuts):
        yield data[: rng.randrange(len(data))]
    for _ in range(junk):
        yield bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300)))


def expect_error_or(check: Callable[[], Any], where: Path | None = None) -> Any:
    """Run one case: a project error (naming `where`) or the value of `check`."""
    with alarm():
        try:
            return check()
        except GarasamError as err:
            if where is not None:
                assert where.name in str(err), f"the error does not name {where.name}: {err}"
            return None


def _picture(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)


def _encoded(array: np.ndarray, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_images(tmp_path: Path, fmt: str) -> None:
    rng = random.Random(f"{SEED}{fmt}")
    valid = _encoded(_picture(np.random.default_rng(SEED)), fmt)
    path = tmp_path / f"x.{fmt.lower()}"
    for data in byte_mutations(valid, rng, flips=30, cuts=15, junk=10):
        path.write_bytes(data)
        image = expect_error_or(lambda: load_image(path), path)
        if image is not None:
            assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8


@pytest.mark.parametrize("mode", ["L", "P", "I;16"])
def test_masks_and_folder_pairs(tmp_path: Path, mode: str) -> None:
    rng = random.Random(f"{SEED}{mode}")
    labels = np.zeros((24, 32), dtype=np.uint16 if mode == "I;16" else np.uint8)
    labels[4:12, 6:20] = 255 if mode == "L" else 1
    labels[14:22, 2:9] = 255 if mode == "L" else 2
    mask_image = Image.fromarray(labels)
    if mode == "P":
        mask_image = mask_image.convert("P")
    buffer = io.BytesIO()
    mask_image.save(buffer, "PNG")
    (tmp_path / "a.jpg").write_bytes(_encoded(_picture(np.random.default_rng(SEED)), "JPEG"))
    mask_path = tmp_path / "a.png"
    for data in byte_mutations(buffer.getvalue(), rng, flips=25, cuts=10, junk=5):
        mask_path.write_bytes(data)
        array = expect_error_or(lambda: read_label_map(mask_path)[0], mask_path)
        if array is not None:
            assert array.ndim in (2, 3)
        reader = expect_error_or(lambda: FolderReader(tmp_path))
        sample = None if reader is None else expect_error_or(lambda reader=reader: reader.get(0))
        if sample is not None:
            assert sample.masks and all(
                m.dtype == bool and m.shape == (24, 32) and m.any() for m in sample.masks
            )
        elif reader is not None:
            assert reader.problems, "a skipped item must say why"


def _runs_mask(runs: list[int], height: int, width: int) -> np.ndarray:
    values = np.repeat(np.arange(len(runs)) % 2, runs).astype(np.uint8)
    return values.reshape(width, height).T  # COCO runs go down the columns


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools and NumPy 2's copy keyword
def test_rle_strings_accepted_decode_to_exactly_their_runs() -> None:
    from pycocotools import mask as mask_utils

    rng = random.Random(SEED)
    alphabet = [chr(c) for c in range(48, 48 + 64)] + ["!", " ", "\x7f", "é"]
    accepted = 0
    for case in range(400):
        height, width = rng.randint(1, 6), rng.randint(1, 6)
        if case % 2:  # a valid encoding, then mutated
            mask = np.asfortranarray(
                (np.random.default_rng(case).random((height, width)) > 0.5).astype(np.uint8)
            )
            text = list(mask_utils.encode(mask)["counts"].decode())
            for _ in range(rng.randint(0, 2)):
                if text:
                    text[rng.randrange(len(text))] = rng.choice(alphabet)
            counts = "".join(text)
        else:
            counts = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))
        try:
            runs = compressed_runs(counts)
            check_runs(runs, height, width)
        except ValueError:
            continue
        accepted += 1
        decoded = mask_utils.decode({"size": [height, width], "counts": counts.encode()})
        np.testing.assert_array_equal(decoded, _runs_mask(runs, height, width), err_msg=repr(counts))
    assert accepted >= 50  # the valid encodings left unmutated, at least, are accepted


def _coco_document(root: Path) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(SEED)
    images, annotations = [], []
    block = np.zeros((24, 32), dtype=np.uint8, order="F")
    block[5:15, 8:20] = 1
    compressed = mask_utils.encode(block)
    segmentations = [
        [[8.0, 5.0, 20.0, 5.0, 20.0, 15.0, 8.0, 15.0]],
        {"size": [24, 32], "counts": compressed["counts"].decode()},
        {"size": [24, 32], "counts": [5 * 24 + 5, 10, 14, 10, 24 * 32 - 5 * 24 - 5 - 34]},
    ]
    for index, segmentation in enumerate(segmentations, start=1):
        (root / f"img{index}.png").write_bytes(_encoded(_picture(rng), "PNG"))
        images.append({"id": index, "file_name": f"img{index}.png", "height": 24, "width": 32})
        annotations.append(
            {
                "id": 100 + index,
                "image_id": index,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": segmentation,
            }
        )
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}


JUNK_VALUES: list[Any] = [None, -1, 0, 10**12, 1e308, -0.5, "x", "", [], {}, True, [1, 2, 3], {"a": 1}]


def structural_mutations(document: Any, rng: random.Random, count: int) -> Iterator[Any]:
    """Copies of a JSON document with one node replaced by a junk value or removed."""
    paths: list[tuple[Any, ...]] = []

    def walk(node: Any, path: tuple[Any, ...]) -> None:
        paths.append(path)
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in items:
            walk(child, (*path, key))

    walk(document, ())
    for _ in range(count):
        path = rng.choice(paths[1:])
        mutated = copy.deepcopy(document)
        parent = mutated
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and rng.random() < 0.25:
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(JUNK_VALUES))
        yield mutated


def test_coco_files(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    document = _coco_document(tmp_path)
    path = tmp_path / "annotations.json"
    text = json.dumps(document).encode()
    cases = [json.dumps(d).encode() for d in structural_mutations(document, rng, 150)]
    cases += list(byte_mutations(text, rng, flips=30, cuts=15, junk=5))
    for data in cases:
        path.write_bytes(data)
        reader = expect_error_or(lambda: CocoReader(path))
        if reader is None:
            continue
        for index in range(len(reader)):
            sample = expect_error_or(lambda index=index, reader=reader: reader.get(index))
            if sample is not None:
                assert all(
                    m.dtype == bool and m.shape == sample.image.shape[:2] and m.any() for m in sample.masks
                )
                assert set(np.unique(np.stack(sample.masks))) <= {False, True}


@pytest.fixture(scope="module")
def tiny() -> SamModel:
    torch.manual_seed(0)
    return SamModel(sam_config("tiny")).eval()


def _flip_only_changes_one_number(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> None:
    assert before.keys() == after.keys()
    changed = sum(int((before[k] != after[k]).sum()) for k in before if before[k].shape == after[k].shape)
    assert all(before[k].shape == after[k].shape for k in before)
    assert changed <= 1, f"one flipped bit changed {changed} numbers"


def test_sam_checkpoints(tmp_path: Path, tiny: SamModel) -> None:
    """Official formats carry no checksum: a flip in tensor data may load, changing one number only
    (and never into NaN or inf); everything else is a CheckpointError naming the file."""
    rng = random.Random(SEED)
    original = tmp_path / "tiny.safetensors"
    save_sam(tiny, original)
    valid = original.read_bytes()
    reference = load_file(str(original))
    header = 8 + struct.unpack("<Q", valid[:8])[0]
    cases = list(byte_mutations(valid[: header + 64], rng, flips=20, cuts=5, junk=5))  # header region
    cases = [case + valid[header + 64 :] for case in cases[:20]] + cases[20:]
    for _ in range(10):  # flips in the tensor data
        data = bytearray(valid)
        data[rng.randrange(header, len(data))] ^= 1 << rng.randrange(8)
        cases.append(bytes(data))
    path = tmp_path / "mutated.safetensors"
    for data in cases:
        path.write_bytes(data)
        model = expect_error_or(lambda: build_sam("tiny", path), path)
        if model is not None:
            loaded = {k: v for k, v in model.state_dict().items() if k in reference}
            _flip_only_changes_one_number(reference, loaded)
            assert all(v.isfinite().all() for v in loaded.values() if v.is_floating_point())


@pytest.fixture(scope="module")
def adapter_folder(tmp_path_factory: pytest.TempPathFactory, tiny: SamModel) -> Path:
    model = copy.deepcopy(tiny)
    inject_adapters(model, GaRAConfig(r_low=2, r_high=4))
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.normal_(0, 0.1)
    return save_adapters(model, tmp_path_factory.mktemp("adapters") / "gara")


def _copy_folder(source: Path, target: Path) -> Path:
    target.mkdir(exist_ok=True)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        (target / name).write_bytes((source / name).read_bytes())
    return target


def test_adapter_weights(tmp_path: Path, tiny: SamModel, adapter_folder: Path) -> None:
    """The digest in the config catches every change to the weights file, bit flips in tensor data too."""
    rng = random.Random(SEED)
    folder = _copy_folder(adapter_folder, tmp_path / "fuzzed_adapters")
    valid = (adapter_folder / WEIGHTS_NAME).read_bytes()
    for data in byte_mutations(valid, rng, flips=30, cuts=10, junk=5):
        (folder / WEIGHTS_NAME).write_bytes(data)
        model = copy.deepcopy(tiny)
        with alarm(), pytest.raises(GarasamError, match=WEIGHTS_NAME):
            load_adapters(model, folder)
        assert adapter_config(model) is None, "a refused folder must leave the model as it was"


def test_adapter_configs(tmp_path: Path, tiny: SamModel, adapter_folder: Path) -> None:
    rng = random.Random(SEED)
    folder = _copy_folder(adapter_folder, tmp_path / "fuzzed_adapters")
    meta = json.loads((adapter_folder / CONFIG_NAME).read_text())
    text = (adapter_folder / CONFIG_NAME).read_bytes()
    cases = [json.dumps(m).encode() for m in structural_mutations(meta, rng, 120)]
    cases += [
        json.dumps({**meta, "adapter": {**meta["adapter"], "tau": v}}).encode() for v in (math.nan, math.inf)
    ]
    cases += list(byte_mutations(text, rng, flips=20, cuts=10, junk=5))
    for data in cases:
        (folder / CONFIG_NAME).write_bytes(data)
        model = copy.deepcopy(tiny)
        loaded = expect_error_or(lambda model=model: load_adapters(model, folder), folder)
        if loaded is None:
            assert adapter_config(model) is None, "a refused folder must leave the model as it was"
            continue
        # accepted: the model carries exactly the adapters the (possibly edited) file describes
        written = json.loads(data)
        assert adapter_config(loaded) == adapter_config_from_dict(written["adapter"])
