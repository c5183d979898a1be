"""The video benchmark protocol: trackers scored with J and F on identical degraded clips.

For every clip, the clean clip and one copy per degradation (and severity) are made once,
coherently in time (`degrade_clip`, the seed from `seed_for(clip, degradation, severity, seed)`,
optionally a smooth intensity curve per clip), and every model tracks the same frames from the
same prompts. Each object is prompted on the first frame where it is annotated, by protocol:

- `semi`: its ground-truth mask there (semi-supervised VOS, DAVIS's protocol);
- `clicks`: `CLICKS` positive clicks drawn from that mask with a fixed seed per (seed, clip,
  object) (RobustPVOS's promptable protocol: 3 clicks);
- `box`: the mask's tight box.

Every model then propagates forwards from the earliest prompt. An object is scored on the annotated
frames after its prompt frame, the clip's last frame left out, as DAVIS 2017 evaluates (frames
1 to N-2 for a first-frame prompt on a densely annotated clip): J (region) and F (boundary, DAVIS's
0.008 x diagonal tolerance) per frame, their means, recall and decay (`garasam.video.metrics`).
A sequence's J&F is the mean of its objects' (J + F) / 2.

One record per (model, protocol, condition, clip) is written to `<out>/records/` as soon as it is
computed; a rerun reads the records that exist and computes only the rest.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from garasam.adapters import adapter_layers
from garasam.data.degradations import CLEAN, folder_name, get_degradation, get_suite, seed_for
from garasam.data.degradations.temporal import degrade_clip, intensity_curve
from garasam.data.prompts import mask_box, sample_points
from garasam.errors import ConfigError, DataError
from garasam.io import atomic_write_text
from garasam.video.clips import Clip
from garasam.video.metrics import boundary_measure, region_similarity, statistics
from garasam.video.predictor import VideoPredictor

PROTOCOLS = ("semi", "clicks", "box")
CLICKS = 3


@dataclass(frozen=True)
class VideoCondition:
    """One version of every clip: clean, or a degradation at a severity (`folder` names it)."""

    folder: str
    degradation: str
    severity: int


def plan_video_conditions(
    suite: str | None, severities: Sequence[int] | None, only: Sequence[str] | None
) -> list[VideoCondition]:
    """Clean first, then every (degradation, severity) of the suite asked for; `only=["clean"]`
    or `suite=None` for clean alone."""
    conditions = [VideoCondition("clean", "clean", CLEAN.default_severity)]
    if suite is None or (only is not None and list(only) == ["clean"]):
        return conditions
    members = get_suite(suite)
    if only is not None:
        unknown = sorted(set(only) - {d.name for d in members} - {"clean"})
        if unknown:
            raise ConfigError(
                f"--only: unknown degradation(s) {unknown} in suite {suite}; names: {', '.join(d.name for d in members)}"
            )
        members = [d for d in members if d.name in only]
    for degradation in members:
        levels = (
            degradation.severities
            if not severities
            else [s for s in severities if s in degradation.severities]
        )
        if severities and not levels:
            raise ConfigError(
                f"--severities {list(severities)}: none available for {suite}/{degradation.name}"
            )
        conditions += [VideoCondition(folder_name(degradation, s), degradation.name, s) for s in levels]
    return conditions


@dataclass(frozen=True)
class ObjectPrompt:
    obj_id: int
    frame: int
    mask: np.ndarray | None = None
    points: np.ndarray | None = None
    box: np.ndarray | None = None


def object_prompts(
    clip_name: str,
    annotations: Mapping[int, Mapping[int, np.ndarray]],
    protocol: str,
    seed: int,
    max_objects: int | None,
) -> list[ObjectPrompt]:
    """Every object's prompt on the first frame where it is annotated (non-empty), by protocol."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown video protocol {protocol!r}; protocols: {', '.join(PROTOCOLS)}")
    first: dict[int, int] = {}
    for frame in sorted(annotations):
        for obj_id, mask in annotations[frame].items():
            if obj_id not in first and mask.any():
                first[obj_id] = frame
    ids = sorted(first)[:max_objects] if max_objects else sorted(first)
    prompts = []
    for obj_id in ids:
        mask = np.asarray(annotations[first[obj_id]][obj_id], bool)
        if protocol == "semi":
            prompts.append(ObjectPrompt(obj_id, first[obj_id], mask=mask))
        elif protocol == "box":
            prompts.append(ObjectPrompt(obj_id, first[obj_id], box=mask_box(mask)))
        else:
            rng = np.random.default_rng(_prompt_seed(seed, clip_name, obj_id))
            points, _ = sample_points(mask, CLICKS, rng)
            prompts.append(ObjectPrompt(obj_id, first[obj_id], points=points))
    return prompts


def _prompt_seed(seed: int, clip: str, obj_id: int) -> int:
    return int.from_bytes(
        hashlib.sha256(f"{seed}\x00clicks\x00{clip}\x00{obj_id}".encode()).digest()[:4], "little"
    )


def track(
    predictor: VideoPredictor, frames: Sequence[np.ndarray], prompts: Sequence[ObjectPrompt]
) -> tuple[dict[int, dict[int, np.ndarray]], dict[int, dict[int, dict[str, float]]]]:
    """Frame -> object id -> predicted bool mask, from the earliest prompt to the end; and, for a
    predictor that records gates, frame -> object id -> gated layer -> mean active rank on the
    tracked frames (empty otherwise)."""
    state = predictor.init_state(list(frames))
    for prompt in sorted(prompts, key=lambda p: p.frame):
        if prompt.mask is not None:
            predictor.add_new_mask(state, prompt.frame, prompt.obj_id, prompt.mask)
        elif prompt.box is not None:
            predictor.add_new_points_or_box(state, prompt.frame, prompt.obj_id, box=prompt.box)
        else:
            labels = np.ones(len(prompt.points), np.int64)
            predictor.add_new_points_or_box(
                state, prompt.frame, prompt.obj_id, points=prompt.points, labels=labels
            )
    predicted: dict[int, dict[int, np.ndarray]] = {}
    for frame, ids, logits in predictor.propagate_in_video(state):
        predicted[frame] = {obj_id: (logits[i, 0] > 0).cpu().numpy() for i, obj_id in enumerate(ids)}
    return predicted, state.gate_log


def score(
    predicted: Mapping[int, Mapping[int, np.ndarray]],
    annotations: Mapping[int, Mapping[int, np.ndarray]],
    prompts: Sequence[ObjectPrompt],
    num_frames: int,
    shape: tuple[int, int],
) -> dict[str, dict[str, float]]:
    """Per object: J and F means, recalls and decays over its scored frames (see the module); an
    object missing from a frame's ground truth or prediction counts as an empty mask there."""
    results = {}
    empty = np.zeros(shape, bool)
    for prompt in prompts:
        frames = [f for f in sorted(annotations) if prompt.frame < f < num_frames - 1]
        if not frames:
            continue
        region, boundary = [], []
        for frame in frames:
            target = annotations[frame].get(prompt.obj_id, empty)
            prediction = predicted.get(frame, {}).get(prompt.obj_id, empty)
            region.append(region_similarity(prediction, target))
            boundary.append(boundary_measure(prediction, target))
        j, f = statistics(np.array(region)), statistics(np.array(boundary))
        results[str(prompt.obj_id)] = {
            "J": j.mean,
            "F": f.mean,
            "J&F": (j.mean + f.mean) / 2,
            "J_recall": j.recall,
            "F_recall": f.recall,
            "J_decay": j.decay,
            "F_decay": f.decay,
            "frames": len(frames),
        }
    return results


def evaluate_video(
    models: Mapping[str, nn.Module],
    clips: Sequence[Clip],
    conditions: Sequence[VideoCondition],
    protocols: Sequence[str],
    suite: str | None,
    seed: int,
    records: Path,
    intensity_low: float | None = None,
    max_objects: int | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every (model, protocol, condition, clip) record, read from `records` where a previous run left
    it, computed (and written there at once) otherwise."""
    # gate records only for models with adapters: a frozen model would walk its modules every frame for nothing
    predictors = {
        name: VideoPredictor(model, record_gates=bool(adapter_layers(model)))
        for name, model in models.items()
    }
    done: list[dict[str, Any]] = []
    total = len(models) * len(protocols) * len(conditions) * len(clips)
    with tqdm(total=total, desc="eval --video", unit="run") as bar:
        for clip in clips:
            frames = [clip.frame(i) for i in range(len(clip))]
            annotations = {f: clip.masks(f) for f in sorted(clip.annotations)}
            for condition in conditions:
                todo = [
                    (name, protocol)
                    for name in models
                    for protocol in protocols
                    if not _record_path(records, name, protocol, condition, clip).is_file()
                ]
                degraded = None
                for name in models:
                    for protocol in protocols:
                        path = _record_path(records, name, protocol, condition, clip)
                        if (name, protocol) not in todo:
                            done.append(json.loads(path.read_text(encoding="utf-8")))
                            bar.update(1)
                            continue
                        if degraded is None:
                            degraded = _degrade(
                                clip.name, frames, annotations, condition, suite, seed, intensity_low
                            )
                        view_frames, view_annotations, curve = degraded
                        prompts = object_prompts(clip.name, view_annotations, protocol, seed, max_objects)
                        if not prompts:
                            raise DataError(f"{clip.name}: no annotated object to prompt")
                        with torch.inference_mode():
                            predicted, gates = track(predictors[name], view_frames, prompts)
                        record = {
                            "model": name,
                            "protocol": protocol,
                            "condition": condition.folder,
                            "degradation": condition.degradation,
                            "severity": condition.severity,
                            "clip": clip.name,
                            "intensity": None if curve is None else [round(float(v), 4) for v in curve],
                            "objects": score(
                                predicted, view_annotations, prompts, len(view_frames), frames[0].shape[:2]
                            ),
                        }
                        if gates:  # the gated adapters' mean active rank, per tracked frame and object
                            record["gates"] = {
                                str(frame): {
                                    str(obj): {layer: round(rank, 3) for layer, rank in layers.items()}
                                    for obj, layers in objects.items()
                                }
                                for frame, objects in sorted(gates.items())
                            }
                        atomic_write_text(path, json.dumps(record) + "\n")
                        done.append(record)
                        if on_record is not None:
                            on_record(record)
                        bar.update(1)
    return done


def _record_path(records: Path, model: str, protocol: str, condition: VideoCondition, clip: Clip) -> Path:
    return records / model / protocol / condition.folder / f"{clip.name}.json"


def _degrade(
    clip: str,
    frames: list[np.ndarray],
    annotations: dict[int, dict[int, np.ndarray]],
    condition: VideoCondition,
    suite: str | None,
    seed: int,
    intensity_low: float | None,
) -> tuple[list[np.ndarray], dict[int, dict[int, np.ndarray]], np.ndarray | None]:
    """The clip's frames and annotations under `condition` (geometric degradations warp the masks)."""
    if condition.degradation == "clean":
        return frames, annotations, None
    degradation = get_degradation(suite, condition.degradation)
    clip_seed = seed_for(clip, degradation.name, condition.severity, seed)
    curve = None
    if intensity_low is not None and not degradation.geometric:
        curve = intensity_curve(len(frames), clip_seed, low=intensity_low)
    stacks = None
    if degradation.geometric:
        stacks = [
            np.stack([annotations[f][i] for i in sorted(annotations[f])])
            if f in annotations and annotations[f]
            else None
            for f in range(len(frames))
        ]
    out, warped = degrade_clip(
        degradation, frames, clip_seed, condition.severity, masks=stacks, intensity=curve
    )
    if warped is None:
        return out, annotations, curve
    moved = {
        f: dict(zip(sorted(annotations[f]), warped[f], strict=True))
        for f in annotations
        if warped[f] is not None
    }
    return out, {**annotations, **moved}, curve


def sequence_scores(
    records: Sequence[Mapping[str, Any]], key: str = "J&F"
) -> dict[tuple[str, str, str], dict[str, float]]:
    """(model, protocol, condition) -> clip -> the mean of its objects' `key`."""
    table: dict[tuple[str, str, str], dict[str, float]] = {}
    for record in records:
        values = [o[key] for o in record["objects"].values() if not math.isnan(o[key])]
        if values:
            table.setdefault((record["model"], record["protocol"], record["condition"]), {})[
                record["clip"]
            ] = float(np.mean(values))
    return table
