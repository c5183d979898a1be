"""Training adapters on video: SAM 2.1 tracks a degraded clip, the loss covers every frame.

One step per process takes one clip of `data.frames` consecutive frames (from a random annotated
start frame with at least one object), degrades it coherently in time (`degrade_clip`: a
degradation drawn by `data.degradation_weights`, an optional intensity curve), prompts up to
`data.max_objects` objects on its first frame (clicks, a box or the mask, drawn per object), adds
`prompts.corrections` correction clicks there, then tracks the clip with gradients through the
encoder, the memory attention and the memory: every prediction on the first frame and every
tracked frame with ground truth enters the loss (focal + dice, as for images; SAM 2.1's decoder
returns one mask per object while tracking, so the IoU head is not trained here). Only the adapters
train; the frozen model stays in eval mode and the adapters in training mode (GaRA's gates sample).

What is sampled at step s on rank r depends only on (run.seed, s, r), and the generators' states go
into every checkpoint, so a resumed run continues exactly as an uninterrupted one would (tested).
Under torchrun the adapters' gradients are averaged over the processes before each update.
Checkpoints, resume, the run folder and the final `adapters/` are the image trainer's
(`garasam.train.checkpoint`, `garasam.train.resume`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from garasam.adapters import adapter_layers, trainable_parameters
from garasam.assembly import ModelSpec, build_model
from garasam.data.degradations import CLEAN, get_degradation, get_suite
from garasam.data.degradations.temporal import degrade_clip, intensity_curve
from garasam.data.prompts import interior_point, mask_box, sample_points
from garasam.errors import ConfigError, DataError
from garasam.outputs import claim_output
from garasam.runtime import StopRequest, join_process_group, leave_process_group
from garasam.train import checkpoint as ckpt
from garasam.train import distributed
from garasam.train.losses import LossWeights, mask_losses
from garasam.train.monitor import Monitor
from garasam.train.resume import prepare_output, restore
from garasam.version import __version__
from garasam.video.clips import Clip, open_clips
from garasam.video.frames import ArrayFrames
from garasam.video.predictor import VideoPredictor
from garasam.video.state import VideoState
from garasam.video.train_config import VideoTrainConfig


@dataclass
class ClipSample:
    """One training clip: degraded frames, ground truth per annotated frame, the prompts of frame 0."""

    name: str
    degradation: str
    frames: list[np.ndarray]
    annotations: dict[int, dict[int, np.ndarray]]  # frame (0-based in the sample) -> object -> mask
    prompts: dict[int, tuple[str, np.ndarray]]  # object -> ("clicks" | "box" | "mask", value)


@dataclass
class VideoTrainResult:
    status: str  # "completed" or "interrupted"
    steps: int
    seconds: float
    last_loss: float | None
    adapters_dir: Path | None
    signal: int | None = None


def sample_clip(clips: list[Clip], config: VideoTrainConfig, rng: np.random.Generator) -> ClipSample:
    """The clip of one step, from `rng` alone (see the module)."""
    data = config.data
    for _ in range(100):  # a clip without a usable start frame is passed over for another draw
        clip = clips[int(rng.integers(len(clips)))]
        starts = [f for f in sorted(clip.annotations) if any(m.any() for m in clip.masks(f).values())]
        if starts:
            break
    else:
        raise DataError(f"{data.train}: no clip has an annotated frame with an object (100 draws)")
    whole = [f for f in starts if f + data.frames <= len(clip)]  # a full-length clip where one fits
    starts = whole or starts
    start = starts[int(rng.integers(len(starts)))]
    stop = min(len(clip), start + data.frames)
    frames = [clip.frame(i) for i in range(start, stop)]
    annotations = {f - start: clip.masks(f) for f in clip.annotations if start <= f < stop}
    visible = [obj for obj, mask in annotations[0].items() if mask.any()]
    chosen = sorted(rng.choice(visible, size=min(len(visible), data.max_objects), replace=False).tolist())
    annotations = {f: {o: m for o, m in masks.items() if o in chosen} for f, masks in annotations.items()}
    name, degradation = _draw_degradation(config, rng)
    seed = int(rng.integers(2**32))
    curve = None
    if name != "clean" and data.intensity_low is not None and not degradation.geometric:
        curve = intensity_curve(len(frames), seed, low=data.intensity_low)
    severity = data.severity if data.severity is not None else int(rng.choice(degradation.severities))
    stacks = None
    if degradation.geometric:  # an object that has left a frame is warped as an empty mask there
        empty = np.zeros(frames[0].shape[:2], bool)
        stacks = [
            np.stack([annotations[f].get(o, empty) for o in chosen]) if f in annotations else None
            for f in range(len(frames))
        ]
    frames, warped = degrade_clip(degradation, frames, seed, severity, masks=stacks, intensity=curve)
    if warped is not None:  # the warped masks, of the objects each frame annotates
        annotations = {
            f: {o: w for o, w in zip(chosen, warped[f], strict=True) if o in annotations[f]}
            for f in annotations
        }
    prompts = {}
    for obj in chosen:
        mask = annotations[0][obj]
        kind = config.prompts.kinds[int(rng.integers(len(config.prompts.kinds)))]
        if not mask.any():  # warped out of the picture: fall back to the mask itself
            kind = "mask"
        if kind == "clicks":
            prompts[obj] = (kind, sample_points(mask, config.prompts.clicks, rng)[0])
        elif kind == "box":
            prompts[obj] = (kind, mask_box(mask, config.prompts.box_jitter, rng))
        else:
            prompts[obj] = (kind, mask)
    return ClipSample(clip.name, name, frames, annotations, prompts)


def _draw_degradation(config: VideoTrainConfig, rng: np.random.Generator):
    data = config.data
    names = ["clean", *(d.name for d in get_suite(data.suite))]
    weights = data.degradation_weights or dict.fromkeys(names, 1.0)
    names = [n for n in names if weights.get(n, 0) > 0]
    p = np.array([weights[n] for n in names], dtype=np.float64)
    name = names[int(rng.choice(len(names), p=p / p.sum()))]
    return name, CLEAN if name == "clean" else get_degradation(data.suite, name)


def clip_loss(
    predictor: VideoPredictor,
    sample: ClipSample,
    config: VideoTrainConfig,
    weights: LossWeights,
    object_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Track `sample` with gradients; the mean loss over every trained prediction, and statistics.
    `object_weight`: a binary cross-entropy on the object score (is the object visible?), SAM 2's
    class loss, added to each prediction's loss."""
    model = predictor.model
    device = next(model.parameters()).device
    state = VideoState(
        ArrayFrames(sample.frames, sample.name),
        predictor.image_size,
        device=device,
        state_device=device,
        frames_device=device,
    )
    targets = {
        f: {o: torch.from_numpy(m).to(device) for o, m in masks.items()}
        for f, masks in sample.annotations.items()
    }
    terms: list[torch.Tensor] = []
    ious: list[float] = []

    def add(out: dict, frame: int, obj: int) -> None:
        target = targets[frame][obj]
        losses = mask_losses(
            out["pred_masks"][:, :1], out["pred_masks"].new_zeros(1, 1), target[None], weights=weights
        )
        term = losses.total
        if object_weight:
            score = out["object_score_logits"].float().reshape(-1)[:1]
            present = target.any().float().reshape(1)
            term = term + object_weight * F.binary_cross_entropy_with_logits(score, present)
        terms.append(term)
        ious.append(float(losses.iou.mean()))

    for obj in sorted(sample.prompts):
        obj_idx = state.obj_id_to_idx(obj)
        kind, value = sample.prompts[obj]
        points = mask = None
        if kind == "mask":
            mask = _square_mask(value, predictor.image_size, device)
        else:
            coords, labels = _prompt_points(kind, value)
            points = _points_input(coords, labels, state, predictor.image_size, device)
        out = predictor._decode(state, obj_idx, 0, True, points, mask, False, memory=False)
        add(out, 0, obj)
        if points is not None:
            for _ in range(config.prompts.corrections):
                click, label = _correction(out["pred_masks"], sample.annotations[0][obj])
                if click is None:
                    break
                coords, labels = np.concatenate([coords, [click]]), np.concatenate([labels, [label]])
                points = _points_input(coords, labels, state, predictor.image_size, device)
                previous = torch.clamp(out["pred_masks"], -32.0, 32.0)
                out = predictor._decode(state, obj_idx, 0, True, points, None, False, previous, memory=False)
                add(out, 0, obj)
        high_res = F.interpolate(
            out["pred_masks"], (predictor.image_size,) * 2, mode="bilinear", align_corners=False
        )
        predictor._write_memory(state, 0, out, high_res, binarize=True)
        state.output_dict_per_obj[obj_idx]["cond_frame_outputs"][0] = out
    for frame in range(1, len(sample.frames)):
        for obj in sorted(sample.prompts):
            obj_idx = state.obj_id_to_idx(obj)
            out = predictor._decode(state, obj_idx, frame, False, None, None, False)
            state.output_dict_per_obj[obj_idx]["non_cond_frame_outputs"][frame] = out
            if frame in targets and obj in targets[frame]:
                add(out, frame, obj)
    loss = torch.stack(terms).mean()
    return loss, {"loss": float(loss.detach()), "iou": float(np.mean(ious)), "predictions": len(terms)}


def _prompt_points(kind: str, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if kind == "box":
        return np.asarray(value, np.float32).reshape(2, 2), np.array([2, 3])
    return np.asarray(value, np.float32), np.ones(len(value), np.int64)


def _points_input(
    coords: np.ndarray, labels: np.ndarray, state: VideoState, side: int, device: torch.device
) -> dict:
    """Pixels of the frame -> the model's square, as the tracker's point inputs."""
    scale = torch.tensor([side / state.video_width, side / state.video_height])
    points = torch.as_tensor(coords, dtype=torch.float32) * scale
    return {
        "point_coords": points[None, None].to(device),
        "point_labels": torch.as_tensor(labels, dtype=torch.int32)[None, None].to(device),
    }


def _square_mask(mask: np.ndarray, side: int, device: torch.device) -> torch.Tensor:
    pixels = torch.from_numpy(mask.astype(np.float32))[None, None].to(device)
    pixels = F.interpolate(pixels, (side, side), mode="bilinear", align_corners=False, antialias=True)
    return (pixels >= 0.5).float()


def _correction(logits: torch.Tensor, target: np.ndarray) -> tuple[np.ndarray | None, int]:
    """A click at the most interior pixel of the larger error: positive on a miss, negative on a
    false alarm; None when the prediction is exact."""
    size = target.shape
    predicted = (
        F.interpolate(logits.detach().float(), size, mode="bilinear", align_corners=False)[0, 0].cpu().numpy()
        > 0
    )
    missed, false = target & ~predicted, predicted & ~target
    if not missed.any() and not false.any():
        return None, 0
    region, label = (missed, 1) if missed.sum() >= false.sum() else (false, 0)
    x, y = interior_point(region)
    return np.array([x, y], np.float32), label


def train_video(config: VideoTrainConfig) -> VideoTrainResult:
    """Run `config` (alone or under torchrun) to its last step or a stop signal."""
    if not config.data.train:
        raise ConfigError("data.train: give the training clips, e.g. --data frames:clips/")
    if config.output_dir is None:
        raise ConfigError("output_dir: give the run folder (--out)")
    ctx = join_process_group(config.run.device)
    output = Path(config.output_dir)
    try:
        with claim_output(output, "train", writer=ctx.is_main):
            return _Trainer(config, ctx, output).run()
    finally:
        leave_process_group(ctx)


class _Trainer:
    def __init__(self, config: VideoTrainConfig, ctx: Any, output: Path) -> None:
        self.config, self.ctx, self.output = config, ctx, output
        self.clips = [clip for spec in config.data.train for clip in open_clips(spec)]
        resume_from = prepare_output(config, output, ctx)
        torch.manual_seed(config.run.seed)
        spec = ModelSpec(config.model.model_type, config.model.checkpoint, None)
        self.model = build_model(
            spec,
            device=ctx.device,
            inject=config.adapter_config(),
            trainable=True,
            random_weights=True,
            video=True,
        )
        self.predictor = VideoPredictor(self.model)  # puts the whole model in eval mode
        for layer in adapter_layers(self.model).values():
            layer.train()  # GaRA's gates sample (Gumbel) in training; the frozen model stays in eval
        self.parameters = [p for p in self.model.parameters() if p.requires_grad]
        optim = config.optim
        self.optimizer = torch.optim.AdamW(
            self.parameters, lr=optim.lr, weight_decay=optim.weight_decay, betas=optim.betas, eps=optim.eps
        )
        self.steps_per_epoch = max(1, math.ceil(len(self.clips) / ctx.world_size))
        self.total = config.run.max_steps or config.schedule.epochs * self.steps_per_epoch
        self.decays = sorted(
            round(e / config.schedule.epochs * self.total) for e in config.schedule.decay_epochs
        )
        self.step = 0
        if resume_from is not None:
            self.step = restore(resume_from, config, self.model, self.optimizer, len(self.clips), ctx).step
        self.weights = LossWeights(
            config.loss.focal_weight,
            config.loss.dice_weight,
            0.0,
            config.loss.focal_gamma,
            config.loss.focal_alpha,
            config.loss.dice,
        )
        self.monitor = Monitor(
            output, ctx.is_main, self.total, self.step, config.logging.tensorboard, config.logging.progress
        )

    def run(self) -> VideoTrainResult:
        start, begun, last = self.step, time.time(), None
        self.monitor.event(
            "start",
            step=self.step,
            total_steps=self.total,
            clips=len(self.clips),
            world_size=self.ctx.world_size,
            parameters=str(trainable_parameters(self.model)),
        )
        try:
            with StopRequest() as stop:
                while self.step < self.total and stop.signal is None:
                    last = self._train_step()
                    self.step += 1
                    if self.step % self.config.checkpoint.every_steps == 0 or self.step == self.total:
                        self._save()
                if stop.signal is not None:
                    self._save()
                    return VideoTrainResult(
                        "interrupted", self.step, time.time() - begun, last, None, stop.signal
                    )
            adapters = None
            if self.ctx.is_main:
                adapters = ckpt.export_adapters(
                    self.output, self.model, {"training_step": self.step, "task": "video"}
                )
            distributed.barrier(self.ctx)
            self.monitor.event(
                "end", step=self.step, seconds=round(time.time() - begun, 1), steps_run=self.step - start
            )
            return VideoTrainResult("completed", self.step, time.time() - begun, last, adapters)
        finally:
            self.monitor.close()

    def _train_step(self) -> float:
        config = self.config
        lr = config.optim.lr * config.schedule.gamma ** sum(self.step >= d for d in self.decays)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        rng = np.random.default_rng([config.run.seed, self.step, self.ctx.rank])
        sample = sample_clip(self.clips, config, rng)
        loss, stats = clip_loss(self.predictor, sample, config, self.weights, config.loss.object_weight)
        if not torch.isfinite(loss):
            raise DataError(f"step {self.step}: non-finite loss on clip {sample.name} ({sample.degradation})")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.ctx.world_size > 1:
            for parameter in self.parameters:
                if parameter.grad is None:
                    parameter.grad = torch.zeros_like(parameter)
                dist.all_reduce(parameter.grad)
                parameter.grad /= self.ctx.world_size
        norm = float(nn.utils.clip_grad_norm_(self.parameters, config.optim.grad_clip or math.inf))
        self.optimizer.step()
        if (self.step + 1) % config.logging.every_steps == 0 or self.step == 0:
            record = {
                **stats,
                "lr": lr,
                "grad_norm": norm,
                "clip": sample.name,
                "degradation": sample.degradation,
            }
            self.monitor.event("step", step=self.step + 1, **record)
            self.monitor.scalars(self.step + 1, {"loss": stats["loss"], "iou": stats["iou"], "lr": lr})
        self.monitor.advance(1, loss=f"{stats['loss']:.3f}")
        return stats["loss"]

    def _save(self) -> None:
        rng = distributed.all_gather_object(ckpt.rng_state(), self.ctx)
        if self.ctx.is_main:
            state = {
                "step": self.step,
                "dataset_size": len(self.clips),
                "optimizer": self.optimizer.state_dict(),
                "rng": rng,
                "config_hash": self.config.config_hash(),
                "config": self.config.to_dict(),
                "world_size": self.ctx.world_size,
                "garasam_version": __version__,
            }
            path = ckpt.save_checkpoint(self.output, self.step, self.model, state)
            ckpt.prune(self.output, self.config.checkpoint.keep_last)
            self.monitor.event("checkpoint", step=self.step, path=str(path))
        distributed.barrier(self.ctx)
