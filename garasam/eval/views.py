"""The views of one image: its clean and degraded versions, each resized to every model's input
geometry with its prompts, built once in loader workers and shared by every model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from garasam.data.degradations import folder_name, get_degradation, seed_for
from garasam.data.prompts import Prompt, PromptKind, eval_prompt
from garasam.data.transforms import SamTransform
from garasam.errors import DataError
from garasam.eval.conditions import CLEAN_CONDITION, Condition
from garasam.models.features import input_geometry

PROMPT_KINDS: tuple[PromptKind, ...] = ("point", "box")


# A model's input geometry, `garasam.models.features.input_geometry`: (side, square)
Geometry = tuple[int, bool]


@dataclass
class SamInput:
    """A view as the models of one input geometry see it: the resized image and the prompts in its frame."""

    image: torch.Tensor  # uint8 [3, h, w]
    prompts: dict[str, list[Prompt]]  # kind -> input-frame prompts

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[1]), int(self.image.shape[2])


@dataclass
class View:
    """One image under one condition, ready for SAM: the original-frame image and ground truth, one
    prompt per object (original frame), and the input of every geometry the compared models use
    (SAM 1's families pad, SAM 2 stretches: the same degraded image and prompts either way)."""

    condition: Condition
    image: np.ndarray  # H x W x 3 uint8
    masks: np.ndarray  # bool [N, H, W], objects empty in this view dropped
    object_ids: list[int]  # index of each of the N objects in the clean ground truth
    prompts: dict[str, list[Prompt]]  # kind -> original-frame prompts
    inputs: dict[Geometry, SamInput]

    @property
    def original_size(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])


@dataclass
class Item:
    """Views of one image for one encoder batch (the unit the data loader hands over)."""

    position: int  # position of the image in this rank's shard
    image_id: str
    clean: np.ndarray | None  # None: the image could not be read
    views: list[View]
    planned: int  # conditions asked for (views + those that failed), for the progress bar
    first: bool  # first batch of this image (counts the image once)
    problems: list[str]


Source = Literal["fly", "disk"]  # degrade on the fly, or read a Robust-Seg folder's degradation folders


class ViewSource(torch.utils.data.Dataset):
    """Builds the views of (image, chunk of conditions) items; runs in data-loader workers (CPU)."""

    def __init__(
        self,
        dataset: Sequence[Any],
        shard: Sequence[int],
        conditions: Sequence[Condition],
        suite: str,
        prompts: Sequence[PromptKind],
        source: Source,
        seed: int,
        transforms: Sequence[SamTransform],
        batch_size: int,
    ) -> None:
        self.dataset, self.shard, self.suite, self.prompts = dataset, list(shard), suite, tuple(prompts)
        self.source, self.seed, self.transforms = source, seed, list(transforms)
        self.chunks = [list(conditions[i : i + batch_size]) for i in range(0, len(conditions), batch_size)]
        self.readers: dict[Condition, tuple[Any, dict[str, int]]] = {}
        if source == "disk":
            self.readers = {c: self._disk_reader(c) for c in conditions if c != CLEAN_CONDITION}

    def _disk_reader(self, condition: Condition) -> tuple[Any, dict[str, int]]:
        """The reader of one degradation folder, and its image-id -> index map (ids need no file reads)."""
        folder = folder_name(get_degradation(self.suite, condition.degradation), condition.severity)
        reader = self.dataset.with_options(degradation=folder)
        return reader, {reader.image_id(i): i for i in range(len(reader))}

    def __len__(self) -> int:
        return len(self.shard) * len(self.chunks)

    def __getitem__(self, item: int) -> Item:
        position, chunk_index = divmod(item, len(self.chunks))
        index = self.shard[position]
        chunk, first = self.chunks[chunk_index], chunk_index == 0
        problems: list[str] = []
        sample = _load(self.dataset, index, problems)
        if sample is None:
            return Item(position, str(index), None, [], len(chunk), first, problems)
        image_id = str(sample.meta.get("image_id", index))
        clean_masks = np.stack(sample.masks).astype(bool)
        clean_prompts = self._prompts(clean_masks)
        views = []
        for condition in chunk:
            try:
                image, masks = self._degrade(sample.image, clean_masks, image_id, condition)
            except DataError as err:
                problems.append(f"{image_id}: {condition.label}: {err}")
                continue
            same_masks = masks is clean_masks
            present = masks.reshape(len(masks), -1).any(1)
            kept = masks if same_masks else masks[present]
            object_ids = list(range(len(masks))) if same_masks else np.flatnonzero(present).tolist()
            if len(kept) == 0:
                problems.append(f"{image_id}: {condition.label}: every object mask is empty")
                continue
            prompts = clean_prompts if same_masks else self._prompts(kept)
            original = (int(image.shape[0]), int(image.shape[1]))
            inputs = {
                (t.image_size, t.square): SamInput(
                    t.resize_image(image),
                    {kind: [t.apply_prompt(p, original) for p in kinds] for kind, kinds in prompts.items()},
                )
                for t in self.transforms
            }
            views.append(View(condition, image, kept, object_ids, prompts, inputs))
        return Item(position, image_id, sample.image, views, len(chunk), first, problems)

    def _prompts(self, masks: np.ndarray) -> dict[str, list[Prompt]]:
        return {kind: [eval_prompt(mask, kind) for mask in masks] for kind in self.prompts}

    def _degrade(
        self, image: np.ndarray, masks: np.ndarray, image_id: str, condition: Condition
    ) -> tuple[np.ndarray, np.ndarray]:
        if condition == CLEAN_CONDITION:
            return image, masks
        if self.source == "disk":
            reader, ids = self.readers[condition]
            if image_id not in ids:
                raise DataError(f"no image in {reader.image_dir}")
            sample = reader[ids[image_id]]
            return sample.image, np.stack(sample.masks).astype(bool)
        degradation = get_degradation(self.suite, condition.degradation)
        seed = seed_for(image_id, degradation.name, condition.severity, self.seed)
        degraded, warped = degradation.apply_image(image, seed, condition.severity, masks)
        return degraded, masks if warped is None else warped


def _load(dataset: Sequence[Any], index: int, problems: list[str]) -> Any:
    """Sample `index`, or None (with the reason in `problems`) for an unreadable item of a lenient reader."""
    try:
        return dataset[index]
    except DataError as err:
        if getattr(dataset, "strict", False):
            raise
        problems.append(str(err))
        return None


def unpack_item(item: Any) -> Any:
    """The data loader's collate function: items are already complete (batch_size=None)."""
    return item


def loader_worker_init(_: int) -> None:
    """Each loader worker degrades on one thread."""
    torch.set_num_threads(1)  # parallelism comes from the worker processes


def describe_geometry(geometry: Geometry) -> str:
    side, square = geometry
    return f"{side} px, " + ("stretched to the square (SAM 2)" if square else "longest side, zero padded")


def input_transforms(models: Mapping[str, nn.Module]) -> dict[str, SamTransform]:
    """Each model's input transform; models of one geometry share one (their views are built once)."""
    shared: dict[Geometry, SamTransform] = {}
    for model in models.values():
        geometry = input_geometry(model)
        shared.setdefault(geometry, SamTransform(*geometry))
    return {name: shared[input_geometry(model)] for name, model in models.items()}
