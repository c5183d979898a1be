"""The robustness benchmark protocol (reference section 4): several SAMs scored on identical inputs.

For every image, the clean view and one view per degradation (and severity) of the suite are built
once: degradations run on the CPU from `seed_for(image_id, name, severity, seed)` (geometric ones warp
the ground-truth masks too), exactly as `garasam corrupt` writes them, or are read from a Robust-Seg
folder's degradation folders (`source="disk"`). Every object gets one deterministic prompt per kind
(`eval_prompt`: the most interior point, the tight box) from the view's own ground truth, the same
for every model. Each model encodes each view once (views of one image are batched through the
encoder); all prompts of a view go through the mask decoder in one call; masks are upsampled to the
original resolution and thresholded at logit 0, then scored per object (`garasam.eval.metrics`).

Scores are kept as sums and counts per (model, degradation, severity, prompt), so sharding the images
over `torch.distributed` ranks and adding the ranks' sums gives the single-process numbers.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from garasam.adapters import adapter_config, trainable_parameters
from garasam.adapters.io import backbone_identity
from garasam.assembly.encoding import Gates, encode
from garasam.data.degradations import CLEAN, folder_name, get_degradation, get_suite, seed_for
from garasam.data.prompts import Prompt, PromptKind, eval_prompt
from garasam.data.transforms import SamTransform
from garasam.errors import ConfigError, DataError
from garasam.eval.metrics import (
    DEFAULT_DILATION_RATIO,
    METRICS,
    average_precision,
    boundary_width,
    mask_boundary,
    mask_metrics,
)
from garasam.models.features import ImageFeatures, decode, input_geometry
from garasam.models.registry import model_type_of_config
from garasam.runtime import Precision, autocast_for, uses_bf16

PROMPT_KINDS: tuple[PromptKind, ...] = ("point", "box")
Source = Literal["fly", "disk"]
SEED_RULE = "seed_for(image_id, degradation, severity, base_seed): SHA-256 of the four, first 4 bytes"
# Prompts per mask-decoder call: bounds the memory of upsampling every object's mask at once.
MAX_PROMPTS_PER_CALL = 64
_PACKAGES = ("torch", "transformers", "numpy", "kornia", "opencv-python-headless", "scikit-image", "pillow")


@dataclass(frozen=True, order=True)
class Condition:
    """One view of every image: "clean" (severity 0) or a degradation of the suite at one severity."""

    degradation: str
    severity: int

    @property
    def label(self) -> str:
        return self.degradation if self.severity == 0 else f"{self.degradation} severity {self.severity}"


CLEAN_CONDITION = Condition(CLEAN.name, 0)


@dataclass
class MetricSums:
    """Sums of each metric over scored objects, and their number, plus every object's own scores
    (keyed `image_id/object_index`, the object's index in the clean ground truth) for per-object
    statistics such as bootstrap intervals and paired comparisons."""

    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(METRICS, 0.0))
    count: int = 0
    objects: dict[str, tuple[float, ...]] = field(default_factory=dict)  # key -> one value per METRICS
    predicted: dict[str, float] = field(default_factory=dict)  # key -> SAM's predicted IoU of the mask

    def add(
        self,
        values: Mapping[str, torch.Tensor],
        keys: Sequence[str] = (),
        predicted: torch.Tensor | None = None,
    ) -> None:
        for name in METRICS:
            self.sums[name] += float(values[name].sum())
        self.count += int(values[METRICS[0]].numel())
        if keys:
            columns = torch.stack([values[name].float().flatten().cpu() for name in METRICS], 1).tolist()
            self.objects.update(zip(keys, map(tuple, columns), strict=True))
            if predicted is not None:
                self.predicted.update(zip(keys, predicted.float().flatten().cpu().tolist(), strict=True))

    def merge(self, other: MetricSums) -> None:
        for name in METRICS:
            self.sums[name] += other.sums[name]
        self.count += other.count
        self.objects.update(other.objects)
        self.predicted.update(other.predicted)

    def average_precision(self) -> float | None:
        """Mask AP@[.50:.95] of the objects, ranked by SAM's predicted IoU (`metrics.average_precision`)."""
        keys = [key for key in self.objects if key in self.predicted]
        if not keys:
            return None
        column = METRICS.index("iou")
        return average_precision([self.objects[k][column] for k in keys], [self.predicted[k] for k in keys])

    def means(self) -> dict[str, float] | None:
        """Mean of each metric over objects, or None when nothing was scored."""
        if self.count == 0:
            return None
        return {name: value / self.count for name, value in self.sums.items()}


@dataclass
class GateSums:
    """Sums over images of one adapter's per-image gate statistics (see `gate_summary`)."""

    active_rank: float = 0.0
    high_fraction: float = 0.0
    images: int = 0
    rows_per_image: int = 0

    def merge(self, other: GateSums) -> None:
        self.active_rank += other.active_rank
        self.high_fraction += other.high_fraction
        self.images += other.images
        self.rows_per_image = max(self.rows_per_image, other.rows_per_image)


@dataclass
class Example:
    """One image under one condition and prompt kind, kept for the qualitative sheet."""

    image_id: str
    condition: Condition
    prompt: PromptKind
    clean: np.ndarray  # H x W x 3 uint8
    degraded: np.ndarray  # H x W x 3 uint8
    gt: np.ndarray  # bool [N, H, W] (warped for geometric degradations)
    prompts: list[Prompt]  # original-frame prompts, one per object
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # model -> bool [N, H, W]
    iou: dict[str, float] = field(default_factory=dict)  # model -> mean IoU over the objects


ScoreKey = tuple[str, str, int, str]  # model, degradation, severity, prompt
GateKey = tuple[str, str, int, str]  # model, degradation, severity, adapter layer


@dataclass
class Results:
    """Everything one evaluation produced; `garasam.eval.report.write_report` turns it into files."""

    config: dict[str, Any]
    models: dict[str, dict[str, Any]]  # name -> identity (adapter config, backbone, parameters)
    conditions: list[Condition]  # clean first
    scores: dict[ScoreKey, MetricSums]
    gates: dict[GateKey, GateSums]
    num_images: int
    problems: list[str]
    versions: dict[str, str]
    wall_time_s: float
    examples: list[Example] = field(default_factory=list)

    @property
    def model_names(self) -> list[str]:
        return list(self.models)

    @property
    def prompts(self) -> list[PromptKind]:
        return list(self.config["prompts"])

    @property
    def degraded_conditions(self) -> list[Condition]:
        return [c for c in self.conditions if c != CLEAN_CONDITION]

    @property
    def degradation_names(self) -> list[str]:
        """Degradations of the run in suite order, without clean."""
        return list(dict.fromkeys(c.degradation for c in self.degraded_conditions))

    @property
    def severities(self) -> list[int]:
        return sorted({c.severity for c in self.degraded_conditions})

    def condition_label(self, condition: Condition) -> str:
        """A condition's display name; the severity is shown only when the run has several."""
        return condition.label if len(self.severities) > 1 else condition.degradation

    def condition_mean(self, model: str, prompt: str, condition: Condition) -> dict[str, float] | None:
        """Per-object means of one (model, prompt, condition), None if no object was scored."""
        sums = self.scores.get((model, condition.degradation, condition.severity, prompt))
        return None if sums is None else sums.means()

    def count(self, model: str, prompt: str, conditions: Sequence[Condition]) -> int:
        """Objects scored over `conditions`."""
        return sum(self.scores[(model, c.degradation, c.severity, prompt)].count for c in conditions)

    def mean_over(self, model: str, prompt: str, conditions: Sequence[Condition]) -> dict[str, float] | None:
        """Mean over `conditions` of each condition's per-object mean (each degradation weighs the same,
        as the paper's "Degrade" column); conditions without scored objects are left out."""
        means = [m for c in conditions if (m := self.condition_mean(model, prompt, c)) is not None]
        if not means:
            return None
        return {name: sum(m[name] for m in means) / len(means) for name in METRICS}

    def clear(self, model: str, prompt: str) -> dict[str, float] | None:
        return self.condition_mean(model, prompt, CLEAN_CONDITION)

    def average_precision(self, model: str, prompt: str, conditions: Sequence[Condition]) -> float | None:
        """Mean over `conditions` of each condition's mask AP (each degradation weighs the same)."""
        values = [
            ap
            for c in conditions
            if (sums := self.scores.get((model, c.degradation, c.severity, prompt))) is not None
            and (ap := sums.average_precision()) is not None
        ]
        return sum(values) / len(values) if values else None

    def degrade(self, model: str, prompt: str, severity: int | None = None) -> dict[str, float] | None:
        """ "Degrade": the mean over the suite's degradations (and severities, or one `severity`)."""
        conditions = [c for c in self.degraded_conditions if severity is None or c.severity == severity]
        return self.mean_over(model, prompt, conditions)

    def per_degradation(self, model: str, prompt: str, degradation: str) -> dict[str, float] | None:
        """One degradation's mean over the evaluated severities."""
        return self.mean_over(
            model, prompt, [c for c in self.degraded_conditions if c.degradation == degradation]
        )

    def rows(self) -> list[dict[str, Any]]:
        """One row per model x condition x prompt with per-object means and the object count."""
        rows = []
        for model in self.model_names:
            for condition in self.conditions:
                for prompt in self.prompts:
                    sums = self.scores[(model, condition.degradation, condition.severity, prompt)]
                    means = sums.means() or dict.fromkeys(METRICS)
                    rows.append(
                        {
                            "model": model,
                            "dataset": self.config["dataset"],
                            "degradation": condition.degradation,
                            "severity": condition.severity,
                            "prompt": prompt,
                            **means,
                            "count": sums.count,
                        }
                    )
        return rows

    def object_scores(
        self, model: str, prompt: str, condition: Condition, metric: str = "iou"
    ) -> dict[str, float]:
        """Every scored object's `metric` for one (model, prompt, condition), keyed `image_id/index`."""
        column = METRICS.index(metric)
        sums = self.scores[(model, condition.degradation, condition.severity, prompt)]
        return {key: values[column] for key, values in sums.objects.items()}

    def object_rows(self) -> list[dict[str, Any]]:
        """One row per model x condition x prompt x object: the per-object scores file."""
        rows = []
        for (model, degradation, severity, prompt), sums in self.scores.items():
            for key, values in sums.objects.items():
                image_id, _, index = key.rpartition("/")
                rows.append(
                    {
                        "model": model,
                        "image_id": image_id,
                        "object": int(index),
                        "degradation": degradation,
                        "severity": severity,
                        "prompt": prompt,
                        **dict(zip(METRICS, values, strict=True)),
                        "predicted_iou": sums.predicted.get(key),
                    }
                )
        return rows

    def gate_layers(self, model: str) -> list[str]:
        """Adapter layers with gate statistics for `model`, in model order."""
        return list(dict.fromkeys(key[3] for key in self.gates if key[0] == model))

    def gate_rows_per_image(self, model: str, layer: str) -> int:
        """Gate decisions per image of one adapter: windows in windowed blocks, 1 in global blocks."""
        return next(s.rows_per_image for (m, _, _, n), s in self.gates.items() if (m, n) == (model, layer))

    def gate_mean(self, model: str, layer: str, condition: Condition) -> tuple[float, float] | None:
        """(mean active rank, mean high-space fraction) over images, None if never recorded."""
        sums = self.gates.get((model, condition.degradation, condition.severity, layer))
        if sums is None or sums.images == 0:
            return None
        return sums.active_rank / sums.images, sums.high_fraction / sums.images


NO_SUITE = "none"  # evaluate the images as they are, no degradation added


def plan_conditions(
    suite: str, severities: Sequence[int] | None = None, degradations: Sequence[str] | None = None
) -> list[Condition]:
    """Clean, then every (degradation, severity) of `suite` in suite order.

    `severities` defaults to each degradation's own (one for robustseg, 1-5 for imagenet-c);
    `degradations` restricts the suite to some names ("clean" alone, or the suite "none": only the
    clean view, to score photos that are degraded already).
    """
    members = [] if suite == NO_SUITE else get_suite(suite)
    if degradations is not None:
        names = [d.name for d in members]
        degradations = [name for name in degradations if name != CLEAN.name]
        unknown = [name for name in degradations if name not in names]
        if unknown:
            raise ConfigError(f"unknown degradation(s) {unknown} in suite {suite}; names: {', '.join(names)}")
        members = [d for d in members if d.name in set(degradations)]
    conditions = [CLEAN_CONDITION]
    for degradation in members:
        levels = list(degradation.severities) if severities is None else sorted(set(severities))
        bad = [level for level in levels if level not in degradation.severities]
        if bad:
            raise ConfigError(
                f"severities {bad} not available for {suite}/{degradation.name} "
                f"(severities: {list(degradation.severities)})"
            )
        conditions.extend(Condition(degradation.name, level) for level in levels)
    return conditions


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 outside torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def model_identity(model: nn.Module) -> dict[str, Any]:
    """What a model is: its adapters (config, parameter count) and the backbone they sit on."""
    config = adapter_config(model)
    report = trainable_parameters(model)
    if config is None:
        backbone = {
            "model_type": model_type_of_config(model.config) or "custom",
            "checkpoint": getattr(model, "garasam_checkpoint", None),
        }
    else:
        backbone = backbone_identity(model, config)
    return {
        "adapter": None if config is None else config.to_dict(),
        "backbone": backbone,
        "parameters": report.total,
        "adapter_parameters": report.low_rank + report.gates,
    }


def package_versions() -> dict[str, str]:
    import garasam

    versions = {"python": platform.python_version(), "garasam": garasam.__version__}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


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


class _ViewSource(torch.utils.data.Dataset):
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


def _unpack(item: Any) -> Any:
    """The data loader's collate function: items are already complete (batch_size=None)."""
    return item


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # parallelism comes from the worker processes


def _decode(
    model: nn.Module, features: ImageFeatures, prompts: Sequence[Sequence[Prompt]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Low-res logits [B, N, h, w] and SAM's predicted IoU [B, N] of each: N same-kind prompts for each
    of B images' features, one decoder call.

    Boxes use `multimask_output=False`; a single point is ambiguous, so points use the multimask
    output and keep the mask with the highest predicted IoU (SAM's recommendation).
    """
    device = features.device
    if prompts[0][0].kind == "box":
        boxes = np.stack([np.stack([p.box for p in view]) for view in prompts])
        out = decode(
            model,
            features,
            input_boxes=torch.from_numpy(boxes).float().to(device),
            multimask_output=False,
        )
        return out.pred_masks[:, :, 0], out.iou_scores[:, :, 0]
    points = np.stack([np.stack([p.points for p in view]) for view in prompts])
    labels = np.stack([np.stack([p.labels for p in view]) for view in prompts])
    out = decode(
        model,
        features,
        input_points=torch.from_numpy(points).float().to(device),
        input_labels=torch.from_numpy(labels).to(device),
        multimask_output=True,
    )
    best = out.iou_scores.argmax(-1)  # [B, N]
    masks = out.pred_masks
    chosen = masks.gather(2, best[..., None, None, None].expand(-1, -1, 1, *masks.shape[-2:]))[:, :, 0]
    return chosen, out.iou_scores.gather(2, best[..., None])[..., 0]


def predict_masks(
    model: nn.Module,
    features: ImageFeatures,
    prompts: Sequence[Sequence[Prompt]],
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    transform: SamTransform,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary masks [B, N, H, W] at the original size, thresholded at logit 0, and SAM's predicted IoU
    [B, N] of each.

    `features` hold B views of one size with N input-frame prompts of one kind each. The
    decoder sees up to MAX_PROMPTS_PER_CALL prompts per call: several views at once when they have
    few objects, a view's prompts in slices when it has many.
    """
    count = len(prompts[0])
    views_per_call = max(1, MAX_PROMPTS_PER_CALL // count)
    prompts_per_call = min(count, MAX_PROMPTS_PER_CALL)
    results, predicted = [], []
    for v in range(0, len(prompts), views_per_call):
        slices, scores = [], []
        for p in range(0, count, prompts_per_call):
            part = [view[p : p + prompts_per_call] for view in prompts[v : v + views_per_call]]
            logits, iou = _decode(model, features[v : v + views_per_call], part)
            with torch.autocast(features.device.type, enabled=False):  # upsample in float32
                slices.append(transform.postprocess_masks(logits.float(), input_size, original_size) > 0)
            scores.append(iou.float())
        results.append(torch.cat(slices, dim=1))
        predicted.append(torch.cat(scores, dim=1))
    return torch.cat(results), torch.cat(predicted)


def _decoder_groups(views: Sequence[View], kind: str, geometry: Geometry) -> list[list[int]]:
    """Indices of views that can share decoder calls: same object count and same image sizes."""
    groups: dict[tuple[int, tuple[int, int], tuple[int, int]], list[int]] = {}
    for j, view in enumerate(views):
        key = (len(view.prompts[kind]), view.inputs[geometry].size, view.original_size)
        groups.setdefault(key, []).append(j)
    return list(groups.values())


def _score_views(
    models: Mapping[str, nn.Module],
    item: Item,
    transforms: Mapping[str, SamTransform],
    device: torch.device,
    autocast: contextlib.AbstractContextManager,
    dilation_ratio: float,
    kinds: Sequence[PromptKind],
    scores: dict[ScoreKey, MetricSums],
    gates: dict[GateKey, GateSums],
    keep: set[Condition],
) -> list[Example]:
    """Encode the item's views once per model (one batch, in the model's geometry: `transforms` by
    model name), decode every prompt kind, add the scores."""
    views = item.views
    pixels: dict[Geometry, torch.Tensor] = {}
    truths = [torch.from_numpy(view.masks).to(device) for view in views]
    boundaries = [
        mask_boundary(truth, boundary_width(*view.original_size, dilation_ratio))
        for truth, view in zip(truths, views, strict=True)
    ]
    examples = {
        (j, kind): Example(
            item.image_id, view.condition, kind, item.clean, view.image, view.masks, view.prompts[kind]
        )
        for j, view in enumerate(views)
        if view.condition in keep
        for kind in kinds
    }
    for name, model in models.items():
        transform = transforms[name]
        geometry = (transform.image_size, transform.square)
        if geometry not in pixels:
            pixels[geometry] = transform.preprocess([view.inputs[geometry].image for view in views]).to(
                device
            )
        sizes = [view.inputs[geometry].size for view in views]
        with autocast, torch.no_grad():
            features, decisions = encode(model, pixels[geometry], sizes)
        _record_gates(name, decisions, views, gates)
        for kind in kinds:
            for group in _decoder_groups(views, kind, geometry):
                first = views[group[0]].inputs[geometry]
                with autocast:
                    predictions, predicted = predict_masks(
                        model,
                        features[group],
                        [views[j].inputs[geometry].prompts[kind] for j in group],
                        first.size,
                        views[group[0]].original_size,
                        transform,
                    )
                for j, pred, confidence in zip(group, predictions, predicted, strict=True):
                    condition = views[j].condition
                    values = mask_metrics(pred, truths[j], dilation_ratio, boundaries[j])
                    keys = [f"{item.image_id}/{index}" for index in views[j].object_ids]
                    scores[(name, condition.degradation, condition.severity, kind)].add(
                        values, keys, confidence
                    )
                    example = examples.get((j, kind))
                    if example is not None:
                        example.predictions[name] = pred.cpu().numpy()
                        example.iou[name] = float(values["iou"].mean())
    return list(examples.values())


def _record_gates(name: str, decisions: Gates, views: Sequence[View], gates: dict[GateKey, GateSums]) -> None:
    """Add the per-image gate statistics of the encoder forward that just ran (GaRA / MoE-LoRA only)."""
    for summary in decisions.summary():
        for j, view in enumerate(views):
            key = (name, view.condition.degradation, view.condition.severity, summary.name)
            sums = gates.setdefault(key, GateSums(rows_per_image=summary.rows_per_image))
            sums.active_rank += float(summary.mean_active_rank[j])
            sums.high_fraction += float(summary.high_fraction[j])
            sums.images += 1


def _combine(
    scores: dict[ScoreKey, MetricSums],
    gates: dict[GateKey, GateSums],
    problems: list[str],
    num_images: int,
    world: int,
) -> tuple[dict[ScoreKey, MetricSums], dict[GateKey, GateSums], list[str], int]:
    """Add every rank's sums and counts (never averages of averages), in rank order, on every rank."""
    if world == 1:
        return scores, gates, problems, num_images
    parts = _gather((scores, gates, problems, num_images), world)
    merged_scores = {key: MetricSums() for key in scores}
    merged_gates: dict[GateKey, GateSums] = {}
    merged_problems: list[str] = []
    for part_scores, part_gates, part_problems, _ in parts:
        for key, sums in part_scores.items():
            merged_scores[key].merge(sums)
        for key, sums in part_gates.items():
            merged_gates.setdefault(key, GateSums()).merge(sums)
        merged_problems.extend(p for p in part_problems if p not in merged_problems)
    return merged_scores, merged_gates, merged_problems, sum(part[3] for part in parts)


def _dataset_name(dataset: Sequence[Any]) -> str:
    """`reader:folder` for a reader: the default `dataset` column of results.csv."""
    root = getattr(dataset, "root", None)
    if root is None:
        return f"{len(dataset)} in-memory samples"
    return f"{getattr(dataset, 'name', type(dataset).__name__)}:{root.name}"


def _transforms(models: Mapping[str, nn.Module]) -> dict[str, SamTransform]:
    """Each model's input transform; models of one geometry share one (their views are built once)."""
    shared: dict[Geometry, SamTransform] = {}
    for model in models.values():
        geometry = input_geometry(model)
        shared.setdefault(geometry, SamTransform(*geometry))
    return {name: shared[input_geometry(model)] for name, model in models.items()}


def describe_geometry(geometry: Geometry) -> str:
    side, square = geometry
    return f"{side} px, " + ("stretched to the square (SAM 2)" if square else "longest side, zero padded")


def _gather(payload: Any, world: int) -> list[Any]:
    if world == 1:
        return [payload]
    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, payload)
    return parts


def default_example_conditions(conditions: Sequence[Condition], count: int = 3) -> list[Condition]:
    """`count` degradations spread evenly over the suite, each at its highest evaluated severity."""
    names = list(dict.fromkeys(c.degradation for c in conditions if c != CLEAN_CONDITION))
    if not names:
        return []
    picks = sorted({round(i * (len(names) - 1) / max(count - 1, 1)) for i in range(min(count, len(names)))})
    return [max(c for c in conditions if c.degradation == names[i]) for i in picks]


def evaluate(
    models: Mapping[str, nn.Module],
    dataset: Sequence[Any],
    suite: str = "robustseg",
    prompts: Sequence[PromptKind] = PROMPT_KINDS,
    severities: Sequence[int] | None = None,
    *,
    degradations: Sequence[str] | None = None,
    source: Source = "fly",
    seed: int = 0,
    max_images: int | None = None,
    device: str | torch.device = "cpu",
    precision: Precision = "auto",
    batch_size: int = 8,
    workers: int = 0,
    dilation_ratio: float = DEFAULT_DILATION_RATIO,
    examples: int = 0,
    example_conditions: Sequence[Condition] | None = None,
    model_info: Mapping[str, Mapping[str, Any]] | None = None,
    dataset_name: str | None = None,
    progress: bool = True,
) -> Results:
    """Score every model on the clean and degraded views of `dataset` (a reader or a list of Samples).

    Models are put in eval mode on `device`. Under `torch.distributed` each rank scores every
    world-th image and all ranks return the combined results. `examples` keeps the first images of
    rank 0 under `example_conditions` (default: three degradations spread over the suite) for the
    qualitative sheet; `model_info` adds fields to each model's identity (e.g. its adapter folder).
    """
    start = time.perf_counter()
    if not models:
        raise ConfigError("evaluate needs at least one model")
    kinds: list[PromptKind] = list(dict.fromkeys(prompts))
    bad = [kind for kind in kinds if kind not in PROMPT_KINDS]
    if bad or not kinds:
        raise ConfigError(f"prompts must be a non-empty subset of {PROMPT_KINDS}, got {list(prompts)}")
    if source not in ("fly", "disk"):
        raise ConfigError(f"source must be 'fly' or 'disk', got {source!r}")
    if source == "disk" and not hasattr(dataset, "with_options"):
        raise ConfigError("source='disk' reads degradation folders: the dataset must be a robustseg reader")
    if batch_size < 1 or workers < 0 or (max_images is not None and max_images < 1):
        raise ConfigError(
            f"need batch_size >= 1, workers >= 0, max_images >= 1; got {batch_size}, {workers}, {max_images}"
        )
    conditions = plan_conditions(suite, severities, degradations)
    device = torch.device(device)
    autocast = autocast_for(device, precision)
    transforms = _transforms(models)
    rank, world = rank_and_world()
    total = len(dataset) if max_images is None else min(len(dataset), max_images)
    shard = range(rank, total, world)
    keep_conditions = set(
        default_example_conditions(conditions) if example_conditions is None else example_conditions
    )
    for model in models.values():
        model.eval().to(device)
    torch.manual_seed(seed)  # only the random-gating ablation draws at inference

    distinct = list({id(t): t for t in transforms.values()}.values())
    views = _ViewSource(dataset, shard, conditions, suite, kinds, source, seed, distinct, batch_size)
    loader = torch.utils.data.DataLoader(
        views,
        batch_size=None,
        num_workers=workers,
        collate_fn=_unpack,
        worker_init_fn=_worker_init if workers else None,
    )
    scores = {
        (name, c.degradation, c.severity, kind): MetricSums()
        for name in models
        for c in conditions
        for kind in kinds
    }
    gates: dict[GateKey, GateSums] = {}
    problems: list[str] = []
    kept: list[Example] = []
    num_images = 0
    bar = tqdm(
        total=len(shard) * len(conditions),
        desc=f"eval (rank {rank}/{world})" if world > 1 else "eval",
        unit="view",
        disable=not progress or rank != 0,
        dynamic_ncols=True,
    )
    with torch.inference_mode():
        for item in loader:
            problems.extend(p for p in item.problems if p not in problems)
            num_images += int(item.first and item.clean is not None)
            if item.views:
                keep = keep_conditions if rank == 0 and item.position < examples else set()
                kept.extend(
                    _score_views(
                        models, item, transforms, device, autocast, dilation_ratio, kinds, scores, gates, keep
                    )
                )
            bar.update(item.planned)
    bar.close()

    merged_scores, merged_gates, all_problems, images = _combine(scores, gates, problems, num_images, world)
    # What the reader skipped on its own (files without a pair, dropped empty masks) counts too; the
    # items it failed to load are already in the list, under the reader's reason.
    for problem in getattr(dataset, "problems", None) or []:
        if str(problem) not in all_problems and getattr(problem, "reason", None) not in all_problems:
            all_problems.append(str(problem))
    if images == 0:
        name = dataset_name or _dataset_name(dataset)
        reasons = "; ".join(all_problems[:3]) or "no image with at least one object mask"
        more = f" (and {len(all_problems) - 3} more)" if len(all_problems) > 3 else ""
        raise DataError(
            f"{name}: no usable sample to evaluate ({len(dataset)} item(s) found, none readable with an "
            f"object mask): {reasons}{more}"
        )
    identities = {}
    for name, model in models.items():
        identities[name] = {**model_identity(model), **dict((model_info or {}).get(name, {}))}
    config = {
        "dataset": dataset_name or _dataset_name(dataset),
        "dataset_items": len(dataset),
        "suite": suite,
        "prompts": kinds,
        "severities": sorted({c.severity for c in conditions if c != CLEAN_CONDITION}),
        "degradations": list(dict.fromkeys(c.degradation for c in conditions if c != CLEAN_CONDITION)),
        "source": source,
        "seed": seed,
        "seed_rule": SEED_RULE,
        "max_images": max_images,
        "device": str(device),
        "precision": "bf16" if uses_bf16(device, precision) else "fp32",
        "batch_size": batch_size,
        "workers": workers,
        "world_size": world,
        "image_size": sorted({t.image_size for t in transforms.values()}),
        "input_geometry": {
            name: describe_geometry((t.image_size, t.square)) for name, t in transforms.items()
        },
        "dilation_ratio": dilation_ratio,
        "threshold": "logit > 0 at the original resolution",
        "point_prompt": "most interior point (distance-transform maximum), multimask, highest predicted IoU",
        "box_prompt": "tight ground-truth box, single mask",
        "example_conditions": [c.label for c in conditions if c in keep_conditions],
    }
    return Results(
        config=config,
        models=identities,
        conditions=conditions,
        scores=merged_scores,
        gates=merged_gates,
        num_images=images,
        problems=all_problems,
        versions=package_versions(),
        wall_time_s=time.perf_counter() - start,
        examples=kept,
    )
