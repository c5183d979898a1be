"""Training data: per-sample randomness, sharded sampling, degradation choice, prompt groups."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from garasam.data.prompts import Prompt
from garasam.data.readers import Sample
from garasam.data.synthetic import generate_scene
from garasam.data.transforms import SamTransform
from garasam.errors import ConfigError, DataError
from garasam.train.config import DataSection, PromptSection
from garasam.train.data import (
    DegradationChooser,
    EpochSampler,
    TrainCollate,
    TrainDataset,
    group_prompts,
    split_indices,
    to_device,
)


def _scenes(count: int = 4, size: int = 64) -> list[Sample]:
    return [generate_scene(seed, size=(size, size)) for seed in range(count)]


def _epoch_batches(sampler: EpochSampler) -> list[list[int]]:
    keys = list(sampler)
    return [[p for _, p in keys[i : i + sampler.per_rank]] for i in range(0, len(keys), sampler.per_rank)]


def test_global_batches_do_not_depend_on_the_number_of_processes() -> None:
    single = EpochSampler(size=22, global_batch=4, world_size=1, rank=0, seed=3)
    ranks = [EpochSampler(size=22, global_batch=4, world_size=2, rank=r, seed=3) for r in range(2)]
    for sampler in [single, *ranks]:
        sampler.set_epoch(5)
    one = _epoch_batches(single)
    two = [_epoch_batches(r) for r in ranks]
    assert len(one) == single.batches_per_epoch == 5  # the tail of 2 samples is dropped
    for step, batch in enumerate(one):
        assert sorted(batch) == sorted(two[0][step] + two[1][step])
    single.set_epoch(6)
    assert _epoch_batches(single) != one  # reshuffled per epoch
    single.set_epoch(5, start_batch=3)
    assert _epoch_batches(single) == one[3:] and len(single) == 2 * 4
    with pytest.raises(ConfigError, match="multiple"):
        EpochSampler(size=10, global_batch=3, world_size=2, rank=0, seed=0)


def test_sample_choices_depend_only_on_seed_epoch_and_index() -> None:
    data = _scenes()
    dataset = TrainDataset(data, range(4), DataSection(max_objects_per_image=2), PromptSection(), seed=7)
    first, again = dataset[(2, 1)], dataset[(2, 1)]
    assert (first.degradation, first.severity, first.seed) == (again.degradation, again.severity, again.seed)
    for a, b in zip(first.prompts, again.prompts, strict=True):
        assert a.kind == b.kind and np.array_equal(
            a.box if a.box is not None else a.points, b.box if b.box is not None else b.points
        )
    assert len(first.sample.masks) <= 2
    other_epochs = {dataset[(e, 1)].seed for e in range(6)}
    assert len(other_epochs) == 6


def test_degradation_weights_and_uniform_default() -> None:
    rng = np.random.default_rng(0)
    only_fog = DegradationChooser("robustseg", {"fog": 1.0, "clean": 0.0})
    assert {only_fog.draw(rng)[0] for _ in range(20)} == {"fog"}
    uniform = DegradationChooser("robustseg")
    counts = Counter(uniform.draw(rng)[0] for _ in range(3200))
    assert len(counts) == 16 and "clean" in counts
    assert min(counts.values()) > 130 and max(counts.values()) < 270  # 200 expected each
    severity = DegradationChooser("imagenet-c", {"fog": 1.0})
    assert {severity.draw(rng)[1] for _ in range(50)} == {1, 2, 3, 4, 5}


def test_bad_samples_are_replaced_and_reported_unless_strict() -> None:
    class Flaky(list):
        def __getitem__(self, index: int) -> Sample:
            if index == 1:
                raise DataError("broken.jpg: cannot read image")
            return super().__getitem__(index)

    data = Flaky(_scenes(3))
    dataset = TrainDataset(data, range(3), DataSection(), PromptSection(), seed=0)
    item = dataset[(0, 1)]
    assert item.index == 2 and item.problems == ["broken.jpg: cannot read image"]
    strict = TrainDataset(data, range(3), DataSection(strict=True), PromptSection(), seed=0)
    with pytest.raises(DataError, match="broken.jpg"):
        strict[(0, 1)]


def test_split_holds_out_a_seeded_fraction() -> None:
    train, held = split_indices(50, 0.1, seed=1)
    assert len(held) == 5 and sorted(train + held) == list(range(50))
    assert split_indices(50, 0.1, seed=1) == (train, held)
    assert split_indices(50, 0.0, seed=1) == (list(range(50)), [])


def test_prompt_groups_never_pad_point_sets() -> None:
    masks = [torch.zeros(3, 16, 16, dtype=torch.bool), torch.zeros(2, 16, 16, dtype=torch.bool)]
    one = Prompt(points=np.array([[1, 2]], np.float32), labels=np.ones(1, np.int64))
    three = Prompt(points=np.array([[1, 2], [3, 4], [5, 6]], np.float32), labels=np.ones(3, np.int64))
    box = Prompt(box=np.array([0, 0, 5, 5], np.float32))
    groups = group_prompts(
        [[one, three, box], [box, one]], masks, [(16, 16), (12, 16)], "single_point", "cpu"
    )
    by_shape = {(g.boxes is not None, None if g.points is None else g.points.shape[2]): g for g in groups}
    assert set(by_shape) == {(True, None), (False, 1), (False, 3)}
    assert by_shape[(True, None)].image_index.tolist() == [0, 1]
    assert by_shape[(True, None)].input_sizes.tolist() == [[16, 16], [12, 16]]
    assert by_shape[(False, 1)].multimask and not by_shape[(False, 3)].multimask
    assert by_shape[(False, 3)].points.shape == (1, 1, 3, 2) and by_shape[(False, 3)].labels.min() == 1
    off = group_prompts([[one]], masks[:1], [(16, 16)], "off", "cpu")
    assert not off[0].multimask


def test_geometric_degradation_warps_masks_and_redraws_prompts_inside_them() -> None:
    data = _scenes(2, size=64)
    section = DataSection(degradation_weights={"elastic_transform": 1.0}, max_objects_per_image=3)
    dataset = TrainDataset(data, range(2), section, PromptSection(p_box=0.0), seed=0)
    batch = TrainCollate(256)([dataset[(0, i)] for i in range(2)])
    out = to_device(batch, SamTransform(256), "single_point", torch.device("cpu"))
    assert out.pixel_values.shape == (2, 3, 256, 256)
    section = DataSection(degradation_weights={"clean": 1.0}, max_objects_per_image=3)
    plain = TrainDataset(data, range(2), section, PromptSection(p_box=0.0), seed=0)
    clean = TrainCollate(256)([plain[(0, i)] for i in range(2)])  # the same objects, undegraded
    assert clean.degradations == ["clean", "clean"]
    assert not torch.equal(
        out.pixel_values, SamTransform(256).preprocess(clean.sam.images, clean.sam.input_sizes)
    )
    for group in out.groups:
        for row in range(len(group)):
            x, y = group.points[row, 0, 0].long().tolist()
            assert group.targets[row, y, x], "prompt points are drawn inside the warped mask"
    moved = sum(int(g.targets.sum()) for g in out.groups)
    original = sum(int(m.sum()) for m in clean.sam.masks)
    assert moved != original
