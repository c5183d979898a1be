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
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from garasam.assembly.encoding import Gates, encode
from garasam.data.prompts import Prompt, PromptKind
from garasam.data.transforms import SamTransform
from garasam.errors import ConfigError, DataError
from garasam.eval.conditions import CLEAN_CONDITION, Condition, default_example_conditions, plan_conditions
from garasam.eval.metrics import (
    DEFAULT_DILATION_RATIO,
    boundary_width,
    mask_boundary,
    mask_metrics,
)
from garasam.eval.provenance import SEED_RULE, dataset_name_of, model_identity, package_versions
from garasam.eval.results import Example, GateKey, GateSums, MetricSums, Results, ScoreKey
from garasam.eval.views import (
    PROMPT_KINDS,
    Geometry,
    Item,
    Source,
    View,
    ViewSource,
    describe_geometry,
    input_transforms,
    loader_worker_init,
    unpack_item,
)
from garasam.models.features import ImageFeatures, decode
from garasam.runtime import Precision, autocast_for, uses_bf16

# Prompts per mask-decoder call: bounds the memory of upsampling every object's mask at once.
MAX_PROMPTS_PER_CALL = 64


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 outside torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


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


def _gather(payload: Any, world: int) -> list[Any]:
    if world == 1:
        return [payload]
    parts: list[Any] = [None] * world
    dist.all_gather_object(parts, payload)
    return parts


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
    transforms = input_transforms(models)
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
    views = ViewSource(dataset, shard, conditions, suite, kinds, source, seed, distinct, batch_size)
    loader = torch.utils.data.DataLoader(
        views,
        batch_size=None,
        num_workers=workers,
        collate_fn=unpack_item,
        worker_init_fn=loader_worker_init if workers else None,
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
        name = dataset_name or dataset_name_of(dataset)
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
        "dataset": dataset_name or dataset_name_of(dataset),
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
