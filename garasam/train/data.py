"""Training data: decode, degrade, draw prompts and resize in the loader; normalise on the device.

Each sample is degraded at its own resolution before it is resized to SAM's input, by the same
function (`Degradation.apply_image`) and in the same frame as evaluation and `garasam corrupt`, so a
blur of 35 pixels or JPEG's 8 x 8 blocks mean the same in training and at test time (the paper's
benchmarks degrade the original images; degrading after the resize made them 1.6-2.6x weaker).

Every random choice of a sample (objects kept, degradation, its seed, prompts) comes from a generator
seeded by (run seed, epoch, dataset index) alone. A sample is therefore the same whichever process,
worker or resumed run loads it, which is what makes resuming bitwise-exact and a DDP run see the same
global batches as a single process.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from garasam.data.degradations import CLEAN, get_degradation, get_suite
from garasam.data.prompts import Prompt, random_prompt
from garasam.data.readers import Reader, Sample, open_dataset
from garasam.data.transforms import SamBatch, SamTransform
from garasam.errors import ConfigError, DataError
from garasam.train.config import DataSection, PromptSection

MAX_REPLACEMENTS = 16  # a bad sample is replaced by one of the next items; give up after this many


class ConcatReaders(Sequence[Sample]):
    """Several readers seen as one dataset (e.g. LVIS + MSRA10K + ThinObject-5K)."""

    def __init__(self, readers: Sequence[Reader]) -> None:
        self.readers = list(readers)
        self._ends = np.cumsum([len(r) for r in self.readers]).tolist()

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def locate(self, index: int) -> tuple[Reader, int]:
        which = bisect.bisect_right(self._ends, index)
        start = self._ends[which - 1] if which else 0
        return self.readers[which], index - start

    @property
    def strict(self) -> bool:
        return any(r.strict for r in self.readers)

    def image_path(self, index: int) -> Path:
        reader, local = self.locate(index)
        return reader.image_path(local)

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        reader, local = self.locate(index)
        return reader[local]


def open_training_data(specs: Sequence[str], data: DataSection) -> ConcatReaders:
    """Open every `reader:path` spec with the data section's options."""
    if not specs:
        raise ConfigError("no training data: pass --data <reader>:<path> or set data.train in the config")
    return ConcatReaders(
        [open_dataset(spec, min_area=data.min_area, strict=data.strict, objects="all") for spec in specs]
    )


def split_indices(size: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, held-out) index lists: a seeded `fraction` of the items is held out for validation."""
    held = int(round(size * fraction)) if fraction > 0 else 0
    if fraction > 0:
        held = min(max(held, 1), size - 1)
    order = np.random.default_rng([seed, 0x5A1]).permutation(size)
    return sorted(order[held:].tolist()), sorted(order[:held].tolist())


@dataclass
class TrainItem:
    """One sample as the loader hands it over: degraded, objects and prompts chosen, not yet resized."""

    sample: Sample  # degraded at the original resolution; geometric degradations warped its masks
    prompts: list[Prompt]  # original frame, one per mask
    degradation: str
    severity: int | None
    seed: int  # seed of the degradation
    epoch: int
    index: int  # dataset index actually loaded (after replacing bad items)
    problems: list[str] = field(default_factory=list)  # bad items replaced on the way


@dataclass
class TrainBatch:
    """A collated batch: SAM-frame uint8 images and masks plus each sample's random choices."""

    sam: SamBatch
    degradations: list[str]
    severities: list[int | None]
    seeds: list[int]
    epochs: list[int]
    indices: list[int]
    problems: list[str]

    def __len__(self) -> int:
        return len(self.degradations)

    def pin_memory(self) -> TrainBatch:
        """Page-locked images and masks (the DataLoader calls this), so the upload overlaps compute."""
        sam = dataclasses.replace(
            self.sam, images=self.sam.images.pin_memory(), masks=[m.pin_memory() for m in self.sam.masks]
        )
        return dataclasses.replace(self, sam=sam)


class DegradationChooser:
    """Draws a degradation (clean included) by weight; `weights` None = uniform over clean + suite."""

    def __init__(
        self, suite: str, weights: dict[str, float] | None = None, severity: int | None = None
    ) -> None:
        self.suite = suite
        names = [CLEAN.name] + [d.name for d in get_suite(suite)]
        weights = weights if weights is not None else dict.fromkeys(names, 1.0)
        self.names = [n for n in names if weights.get(n, 0) > 0]
        total = sum(weights[n] for n in self.names)
        self.probabilities = np.array([weights[n] / total for n in self.names])
        self.severity = severity

    def draw(self, rng: np.random.Generator) -> tuple[str, int | None]:
        name = self.names[int(rng.choice(len(self.names), p=self.probabilities))]
        degradation = get_degradation(self.suite, name)
        if name == CLEAN.name or len(degradation.severities) == 1:
            return name, None
        if self.severity is not None:
            return name, self.severity
        return name, int(degradation.severities[int(rng.integers(len(degradation.severities)))])


def sample_rng(seed: int, epoch: int, index: int, stream: int = 0) -> np.random.Generator:
    """The generator of one sample's random choices (stream 1 re-draws prompts after a geometric warp)."""
    return np.random.default_rng([seed, epoch, index, stream])


class TrainDataset(Dataset):
    """Maps `(epoch, index)` (from EpochSampler) to a TrainItem; bad items are replaced and reported."""

    def __init__(
        self,
        data: Sequence[Sample],
        indices: Sequence[int],
        data_section: DataSection,
        prompts: PromptSection,
        seed: int,
    ) -> None:
        self.data = data
        self.indices = list(indices)
        self.max_objects = data_section.max_objects_per_image
        self.strict = data_section.strict
        self.prompts = prompts
        self.seed = seed
        self.chooser = DegradationChooser(
            data_section.suite, data_section.degradation_weights, data_section.severity
        )

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: tuple[int, int]) -> TrainItem:  # type: ignore[override]
        epoch, position = key
        problems: list[str] = []
        for attempt in range(MAX_REPLACEMENTS):
            index = self.indices[(position + attempt) % len(self.indices)]
            try:
                sample = self.data[index]
            except DataError as err:
                if self.strict:
                    raise
                problems.append(str(err))
                continue
            return self._item(sample, epoch, index, problems)
        raise DataError(
            f"{MAX_REPLACEMENTS} consecutive training samples could not be read; first problem: {problems[0]}"
        )

    def _item(self, sample: Sample, epoch: int, index: int, problems: list[str]) -> TrainItem:
        rng = sample_rng(self.seed, epoch, index)
        if len(sample.masks) > self.max_objects:
            keep = sorted(rng.choice(len(sample.masks), self.max_objects, replace=False).tolist())
            sample = Sample(image=sample.image, masks=[sample.masks[i] for i in keep], meta=sample.meta)
        name, severity = self.chooser.draw(rng)
        seed = int(rng.integers(2**32))
        prompts = [self.draw_prompt(mask, rng) for mask in sample.masks]
        if name != CLEAN.name:
            sample, prompts = self._degrade(sample, prompts, name, severity, seed, epoch, index)
        return TrainItem(sample, prompts, name, severity, seed, epoch, index, problems)

    def _degrade(
        self,
        sample: Sample,
        prompts: list[Prompt],
        name: str,
        severity: int | None,
        seed: int,
        epoch: int,
        index: int,
    ) -> tuple[Sample, list[Prompt]]:
        """The sample under its degradation; objects a geometric one pushed out of the image are
        dropped and the others get prompts re-drawn inside their warped masks (generator stream 1)."""
        degradation = get_degradation(self.chooser.suite, name)
        masks = np.stack(sample.masks).astype(bool) if sample.masks else None
        image, warped = degradation.apply_image(sample.image, seed, severity, masks)
        if not degradation.geometric or warped is None:
            return Sample(image=image, masks=sample.masks, meta=sample.meta), prompts
        rng = sample_rng(self.seed, epoch, index, stream=1)
        kept = [mask for mask in warped if mask.any()]
        return (
            Sample(image=image, masks=kept, meta=sample.meta),
            [self.draw_prompt(mask, rng) for mask in kept],
        )

    def draw_prompt(self, mask: np.ndarray, rng: np.random.Generator) -> Prompt:
        p = self.prompts
        return random_prompt(mask, rng, max_points=p.max_points, box_jitter=p.box_jitter, p_box=p.p_box)


class TrainCollate:
    """DataLoader collate: resize and pad with SamTransform in the worker (picklable)."""

    def __init__(self, image_size: int, square: bool = False) -> None:
        self.transform = SamTransform(image_size, square)

    def __call__(self, items: list[TrainItem]) -> TrainBatch:
        return TrainBatch(
            sam=self.transform.collate([i.sample for i in items], [i.prompts for i in items]),
            degradations=[i.degradation for i in items],
            severities=[i.severity for i in items],
            seeds=[i.seed for i in items],
            epochs=[i.epoch for i in items],
            indices=[i.index for i in items],
            problems=[p for i in items for p in i.problems],
        )


class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffled, sharded and resumable: yields this rank's `(epoch, position)` keys of one epoch.

    Global batch `s` of an epoch is `perm[s*B:(s+1)*B]` of a permutation seeded by (seed, epoch), and
    rank r takes its r-th contiguous share, so every world size trains on the same global batches
    (DistributedSampler strides instead, and cannot start in the middle of an epoch). The tail that
    does not fill a global batch is dropped.
    """

    def __init__(self, size: int, global_batch: int, world_size: int, rank: int, seed: int) -> None:
        if global_batch % world_size:
            raise ConfigError(
                f"run.batch_size={global_batch} must be a multiple of the {world_size} processes"
            )
        self.size, self.global_batch, self.world_size, self.rank, self.seed = (
            size,
            global_batch,
            world_size,
            rank,
            seed,
        )
        self.per_rank = global_batch // world_size
        self.epoch = 0
        self.start_batch = 0

    @property
    def batches_per_epoch(self) -> int:
        return self.size // self.global_batch

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch (reshuffles) and the first global batch to yield (for resuming)."""
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(self.size, generator=generator).tolist()
        for batch in range(self.start_batch, self.batches_per_epoch):
            first = batch * self.global_batch + self.rank * self.per_rank
            for position in perm[first : first + self.per_rank]:
                yield self.epoch, position

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.per_rank


@dataclass
class PromptGroup:
    """Objects that share one SAM decoder call: same prompt kind and multimask setting."""

    image_index: torch.Tensor  # [n] which image of the batch each object belongs to
    targets: torch.Tensor  # bool [n, S, S]
    input_sizes: torch.Tensor  # [n, 2] (h, w) of the object's image inside the padded frame
    multimask: bool
    points: torch.Tensor | None = None  # [n, 1, K, 2]
    labels: torch.Tensor | None = None  # [n, 1, K]
    boxes: torch.Tensor | None = None  # [n, 1, 4]

    def __len__(self) -> int:
        return int(self.image_index.numel())


def group_prompts(
    prompts: Sequence[Sequence[Prompt]],
    masks: Sequence[torch.Tensor],
    input_sizes: Sequence[tuple[int, int]],
    multimask: str,
    device: torch.device,
) -> list[PromptGroup]:
    """Batch prompts (input frame) into decoder calls: boxes, and point sets by their number of points.

    Objects of every image go into one flat decoder batch per group (the embedding is indexed per
    object), so a batch may mix prompt kinds and object counts freely. Point sets are never padded:
    transformers' SAM zeroes a padding point's embedding but still attends to it, so padding would
    change the mask. One point uses SAM's three-mask output when `multimask` is "single_point".
    """
    buckets: dict[tuple[str, int], list[tuple[int, int, Prompt]]] = {}
    for image, image_prompts in enumerate(prompts):
        for obj, prompt in enumerate(image_prompts):
            key = ("box", 0) if prompt.box is not None else ("point", len(prompt.points))
            buckets.setdefault(key, []).append((image, obj, prompt))
    groups = []
    for (kind, num_points), entries in sorted(buckets.items()):
        image_index = torch.tensor([e[0] for e in entries], dtype=torch.long)
        sizes = torch.tensor([input_sizes[e[0]] for e in entries], dtype=torch.long)
        targets = torch.stack([masks[image][obj] for image, obj, _ in entries])
        group = PromptGroup(
            image_index=image_index.to(device),
            targets=targets.to(device),
            input_sizes=sizes.to(device),
            multimask=kind == "point" and num_points == 1 and multimask == "single_point",
        )
        if kind == "box":
            boxes = np.stack([e[2].box for e in entries]).astype(np.float32)
            group.boxes = torch.from_numpy(boxes)[:, None].to(device)
        else:
            points = np.stack([e[2].points for e in entries]).astype(np.float32)
            labels = np.stack([e[2].labels for e in entries]).astype(np.int64)
            group.points = torch.from_numpy(points)[:, None].to(device)
            group.labels = torch.from_numpy(labels)[:, None].to(device)
        groups.append(group)
    return groups


@dataclass
class DeviceBatch:
    """What one training step consumes, on the training device."""

    pixel_values: torch.Tensor  # normalised float [B, 3, S, S]
    input_sizes: list[tuple[int, int]]  # (h, w) of each image inside its padded square
    groups: list[PromptGroup]
    num_images: int
    num_objects: int
    degradations: list[str]


def to_device(
    batch: TrainBatch, transform: SamTransform, multimask: str, device: torch.device
) -> DeviceBatch:
    """Move an (already degraded) batch to `device`, normalise it there and group its prompts."""
    sam = batch.sam
    non_blocking = device.type == "cuda"
    images = sam.images.to(device, non_blocking=non_blocking)
    masks = [m.to(device, non_blocking=non_blocking) for m in sam.masks]
    pixel_values = transform.preprocess(images, sam.input_sizes)
    groups = group_prompts([list(p) for p in sam.prompts], masks, sam.input_sizes, multimask, device)
    return DeviceBatch(
        pixel_values=pixel_values,
        input_sizes=list(sam.input_sizes),
        groups=groups,
        num_images=len(batch),
        num_objects=sum(len(g) for g in groups),
        degradations=list(batch.degradations),
    )
