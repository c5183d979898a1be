"""The training loop: adapters on a frozen SAM, one process or DDP, checkpointed and resumable.

    from garasam.train import load_config, train
    result = train(load_config("configs/tiny_gara.yaml", ["data.train=robustseg:/data/synth", "output_dir=runs/x"]))

Only adapter and gate parameters train. SAM's encoder, prompt encoder and mask decoder are frozen but
called directly (never through the no_grad `get_image_embeddings`), so the loss gradient flows back
through decoder and prompt encoder into the adapters.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from garasam.adapters import (
    load_adapters,
    trainable_parameters,
)
from garasam.assembly import Gates, ModelSpec, accelerate, build_model, encode, release_valid_area
from garasam.data.provenance import write_training_data
from garasam.data.transforms import SamTransform
from garasam.errors import CheckpointError, ConfigError, GarasamError
from garasam.io import atomic_write_text
from garasam.models.features import decode, input_geometry
from garasam.runtime import (
    DistContext,
    StopRequest,
    autocast_for,
    join_process_group,
    leave_process_group,
    uses_bf16,
)
from garasam.train import checkpoint as ckpt
from garasam.train import distributed, losses
from garasam.train.config import TrainConfig, config_diff, dump_yaml
from garasam.train.data import (
    DeviceBatch,
    EpochSampler,
    TrainBatch,
    TrainCollate,
    TrainDataset,
    open_training_data,
    split_indices,
    to_device,
)
from garasam.train.monitor import Monitor
from garasam.train.preflight import plan_resources
from garasam.train.validation import Validator
from garasam.version import __version__

# Order of the per-step statistics reduced over processes (sums and counts).
_LOSS_TERMS = ("loss", "focal", "dice", "iou_mse", "iou")
_STATS = (*_LOSS_TERMS, "objects", "images", "bad_samples", "stop")


class TrainingDiverged(GarasamError):
    """Too many consecutive steps had a NaN or infinite loss or gradient."""


@dataclass
class TrainResult:
    """What a run produced; `status` is "completed" or "interrupted" (signal, checkpoint written)."""

    output_dir: Path
    adapters_dir: Path | None
    status: str
    steps: int
    epochs_done: float
    seconds: float
    images_per_second: float
    last_loss: float | None
    nonfinite_steps: int
    bad_samples: int
    best: dict[str, Any] | None = None
    best_adapters_dir: Path | None = None  # output/best: the adapters of the best validated step
    validation: dict[str, float] = field(default_factory=dict)
    signal: int | None = None  # the signal that interrupted the run


class PromptedSam(nn.Module):
    """Encoder once per image, then one decoder call per prompt group, with gradients throughout.

    DDP wraps this module, so a whole forward (encoder + decoders) is one DDP forward.
    """

    def __init__(self, sam: nn.Module) -> None:
        super().__init__()
        self.sam = sam
        self.gates: Gates | None = None

    def forward(self, batch: DeviceBatch) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """The image embeddings and, per prompt group, SAM's `(pred_masks, iou_scores)`; the gate
        decisions of the batch are kept in `self.gates` (outside DDP's outputs)."""
        features, self.gates = encode(self.sam, batch.pixel_values, batch.input_sizes)
        outputs = []
        for group in batch.groups:
            out = decode(
                self.sam,
                features.index_select(group.image_index),
                input_points=group.points,
                input_labels=group.labels,
                input_boxes=group.boxes,
                multimask_output=group.multimask,
            )
            outputs.append((out.pred_masks, out.iou_scores))
        return features.embeddings, outputs


def loss_weights(config: TrainConfig) -> losses.LossWeights:
    c = config.loss
    return losses.LossWeights(
        c.focal_weight, c.dice_weight, c.iou_weight, c.focal_gamma, c.focal_alpha, c.dice
    )


def forward_backward(
    module: nn.Module,
    batch: DeviceBatch,
    weights: losses.LossWeights,
    autocast: torch.autocast,
    ctx: DistContext,
) -> dict[str, torch.Tensor]:
    """One forward and backward; returns this process's loss sums (detached) per term.

    The loss is the mean over the objects of all processes: DDP averages gradients over processes,
    so each process scales its sum by world_size / global object count.
    """
    count = torch.tensor([float(batch.num_objects)], device=batch.pixel_values.device)
    distributed.all_reduce_sum(count, ctx)
    with autocast:
        embeddings, outputs = module(batch)
    sums = batch_losses(embeddings, outputs, batch, weights)
    (sums["loss"] * (ctx.world_size / count.clamp(min=1))).sum().backward()
    # the encode kept the gates' valid area through the backward (activation checkpointing re-runs them)
    release_valid_area(getattr(module, "module", module).sam)  # under DDP, the PromptedSam it wraps
    return {k: v.detach().float() for k, v in sums.items()}


def batch_losses(
    embeddings: torch.Tensor,
    outputs: list[tuple[torch.Tensor, torch.Tensor]],
    batch: DeviceBatch,
    weights: losses.LossWeights,
) -> dict[str, torch.Tensor]:
    """Sums over this process's objects of every loss term (the caller normalises by the global count)."""
    parts = [
        losses.mask_losses(pred, iou, g.targets, best_of=True, input_sizes=g.input_sizes, weights=weights)
        for (pred, iou), g in zip(outputs, batch.groups, strict=True)
    ]
    if not parts:
        # No object survived (a geometric degradation moved them all out): a zero loss that still
        # reaches every adapter, so this process's DDP backward matches the other processes'.
        return dict.fromkeys(_LOSS_TERMS, embeddings.float().sum() * 0.0)
    return {
        "loss": sum(p.per_object.sum() for p in parts),
        "focal": sum(p.focal.sum() for p in parts),
        "dice": sum(p.dice.sum() for p in parts),
        "iou_mse": sum(p.iou_mse.sum() for p in parts),
        "iou": sum(p.iou.sum() for p in parts),
    }


def apply_fast_encoder(sam: nn.Module, enabled: bool | None, precision: str) -> None:
    """Switch the encoder to `garasam.fast.encoder` (None: on CUDA only).

    Adapters must already be injected. The frozen weights take the autocast dtype (bf16 halves
    their memory and feeds the fused kernels), trainable adapters and gates keep float32 weights.
    """
    from garasam.adapters import FullFinetuneConfig, adapter_config
    from garasam.fast.encoder import supports_fast_path

    if isinstance(adapter_config(sam), FullFinetuneConfig):
        if enabled:
            raise ConfigError("run.fast_encoder=true casts the frozen encoder; full fine-tuning trains it")
        return
    if not supports_fast_path(sam):
        if enabled:
            raise ConfigError(
                "run.fast_encoder=true: the fast encoder is SAM 1's (ViT); SAM 2.1 runs transformers' own"
            )
        return
    device = next(sam.parameters()).device
    accelerate(sam, enabled, dtype=torch.bfloat16 if uses_bf16(device, precision) else torch.float32)


def enable_activation_checkpointing(sam: nn.Module) -> None:
    """Recompute each encoder block in backward (transformers' GradientCheckpointingLayer, non-reentrant).

    torch.utils.checkpoint restores the RNG state for the recomputation, so GaRA's Gumbel noise is
    drawn identically twice and the gates take the same decisions in forward and backward.
    """
    encoder = sam.vision_encoder
    kwargs = {"use_reentrant": False}
    if hasattr(encoder, "activation_checkpointing_enable"):
        encoder.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # transformers < 5
        encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def lr_factor(step: int, decay_steps: list[int], gamma: float) -> float:
    """Step decay: x gamma at each decay step passed."""
    return gamma ** sum(step >= d for d in decay_steps)


def decay_steps_for(config: TrainConfig, steps_per_epoch: int, total_steps: int) -> list[int]:
    """Decay epochs in steps; with max_steps they scale to the run length (epoch 10 of 20 -> half-way)."""
    s = config.schedule
    if config.run.max_steps is not None:
        return [max(1, round(total_steps * e / s.epochs)) for e in s.decay_epochs]
    return [max(1, round(e * steps_per_epoch)) for e in s.decay_epochs]


class Trainer:
    """One training run; `run()` returns a TrainResult. Build with `train(config)`."""

    def __init__(self, config: TrainConfig, ctx: DistContext) -> None:
        if config.output_dir is None:
            raise ConfigError("no output folder: pass --out DIR or set output_dir in the config")
        self.config = config
        self.ctx = ctx
        self.output = Path(config.output_dir)
        if self.output.exists() and not self.output.is_dir():
            raise ConfigError(f"output_dir {self.output}: exists and is not a folder")
        self.device = ctx.device
        run = config.run
        self.autocast = autocast_for(self.device, run.precision)
        # Does the model and batch fit this machine? Refused before anything is written or built.
        self.resources = plan_resources(
            config.model.model_type,
            -(-run.batch_size // ctx.world_size),
            run.num_workers,
            uses_bf16(self.device, run.precision),
            run.activation_checkpointing,
            self.device,
        )
        workers = self.resources.workers
        # Fresh run, resume, or refuse: decided before anything expensive is built.
        resume_from = self._prepare_output()
        if config.model.init_adapters is not None:
            init_adapters_matching(config)  # a wrong folder is refused before the data is opened

        # Data (every rank opens the readers).
        self.data = open_training_data(config.data.train, config.data)
        val_data, val_indices = None, []
        train_indices = list(range(len(self.data)))
        if config.validation.data is not None:
            val_data = open_training_data([config.validation.data], config.data)
            val_indices = list(range(len(val_data)))
        elif config.validation.fraction > 0:
            train_indices, val_indices = split_indices(len(self.data), config.validation.fraction, run.seed)
            val_data = self.data
        self.dataset = TrainDataset(self.data, train_indices, config.data, config.prompts, run.seed)
        self.sampler = EpochSampler(len(self.dataset), run.batch_size, ctx.world_size, ctx.rank, run.seed)
        self.steps_per_epoch = self.sampler.batches_per_epoch
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"{len(self.dataset)} training samples do not fill one batch of run.batch_size={run.batch_size}"
            )
        self.total_steps = run.max_steps or config.schedule.epochs * self.steps_per_epoch
        self.decay_steps = decay_steps_for(config, self.steps_per_epoch, self.total_steps)

        # Model: SAM frozen, adapters injected, all before DDP sees it.
        torch.manual_seed(run.seed)
        self.sam = build_training_model(config, self.device)
        geometry = input_geometry(self.sam)  # (side, square): SAM 2 stretches, SAM 1 pads
        self.transform = SamTransform(*geometry)
        self.loader = DataLoader(
            self.dataset,
            batch_size=self.sampler.per_rank,
            sampler=self.sampler,
            num_workers=workers,
            collate_fn=TrainCollate(*geometry),
            pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0,
            worker_init_fn=_ignore_signals if workers > 0 else None,
            # A private generator: creating a loader iterator must not advance the global torch RNG,
            # which GaRA's Gumbel noise draws from (bitwise resume depends on it).
            generator=torch.Generator().manual_seed(run.seed),
        )
        self.validator = Validator(val_data, val_indices, config) if val_data is not None else None
        self.params = [p for p in self.sam.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(
            self.params,
            lr=config.optim.lr,
            betas=config.optim.betas,
            eps=config.optim.eps,
            weight_decay=config.optim.weight_decay,
        )
        self.weights = loss_weights(config)

        self.step = 0
        self.best: dict[str, Any] | None = None
        self.validation: dict[str, float] = {}
        self.last_loss: float | None = None
        self.nonfinite_total = 0
        self.bad_samples = 0
        self._consecutive_nonfinite = 0
        self._window = _Window()
        self._throughput = 0.0
        self._first_problem: str | None = None
        if resume_from is not None:
            self._restore(resume_from)
        # Each rank draws its own gate noise; a resumed run restored the exact per-rank state above.
        if resume_from is None:
            torch.manual_seed(run.seed * 1000 + ctx.rank + 1)
        self.prompted = PromptedSam(self.sam)
        self.module = distributed.wrap(self.prompted, ctx)
        self.monitor = Monitor(
            self.output,
            ctx.is_main,
            self.total_steps,
            self.step,
            config.logging.tensorboard,
            config.logging.progress,
        )

    # -- output folder: fresh, resume, or refuse -----------------------------------------------------
    def _prepare_output(self) -> Path | None:
        """Rank 0 inspects the folder and decides; every rank gets the decision (or the error)."""
        decision: tuple[str | None, str | None] = (None, None)
        failure: GarasamError | None = None
        if self.ctx.is_main:
            try:
                path = self._decide_resume()
                decision = (str(path) if path else None, None)
            except GarasamError as err:
                failure, decision = err, (None, str(err))
        path, error = distributed.broadcast_object(decision, self.ctx)
        if failure is not None:
            raise failure
        if error is not None:
            raise ConfigError(error)
        distributed.barrier(self.ctx)
        return Path(path) if path else None

    def _decide_resume(self) -> Path | None:
        config, output = self.config, self.output
        existing = ckpt.read_run(output)
        checkpoints = ckpt.list_checkpoints(output)
        if config.overwrite and (existing or checkpoints):
            ckpt.remove_run(output)
            existing, checkpoints = None, []
        if existing is not None and existing.get("config_hash") != config.config_hash():
            changes = config_diff(existing.get("identity", {}), config.identity())
            raise ConfigError(
                f"{output} holds another run (config hash {existing.get('config_hash')}, this run "
                f"{config.config_hash()}; differences: {'; '.join(changes[:6]) or 'unknown'}); "
                "choose another --out or pass --overwrite to replace it"
            )
        if checkpoints and config.resume is False:
            raise ConfigError(
                f"{output} already holds checkpoints of this run (last at step {checkpoints[-1][0]}); "
                "pass --resume to continue it or --overwrite to start over"
            )
        if not checkpoints and config.resume is True:
            raise ConfigError(
                f"{output}: nothing to resume (no complete checkpoint in {output / ckpt.CHECKPOINTS})"
            )
        if existing is None:
            output.mkdir(parents=True, exist_ok=True)
            ckpt.write_run(
                output,
                {
                    "config_hash": config.config_hash(),
                    "identity": config.identity(),
                    "garasam_version": __version__,
                    "torch_version": torch.__version__,
                    "world_size": self.ctx.world_size,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                },
            )
        atomic_write_text(output / "config.yaml", dump_yaml(config))
        if not checkpoints:
            return None
        path, skipped = ckpt.newest_intact(output)
        if path is None:
            raise CheckpointError(
                f"{output}: no intact checkpoint to resume from:\n  " + "\n  ".join(skipped)
            )
        if skipped:
            warnings.warn(
                f"{output}: resuming from {path.name}, the newest intact checkpoint; passed over "
                + "; ".join(skipped),
                stacklevel=2,
            )
        return path

    def _restore(self, path: Path) -> None:
        state = ckpt.load_state(path)
        if state.get("config_hash") != self.config.config_hash():
            raise CheckpointError(f"{path}: checkpoint of another config (hash {state.get('config_hash')})")
        load_adapters(self.sam, path / ckpt.ADAPTERS, trainable=True)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError) as err:
            raise CheckpointError(f"{path}: optimizer state does not fit this model ({err})") from None
        self.step = int(state["step"])
        self.best = state.get("best")
        self.nonfinite_total = int(state.get("nonfinite_total", 0))
        self.bad_samples = int(state.get("bad_samples", 0))
        rng = state.get("rng") or []
        if state.get("dataset_size") != len(self.dataset):
            warnings.warn(
                f"{path}: the training set had {state.get('dataset_size')} samples, now {len(self.dataset)}; "
                "the data order after resuming differs from an uninterrupted run",
                stacklevel=2,
            )
        if len(rng) == self.ctx.world_size:
            ckpt.set_rng_state(rng[self.ctx.rank])
        else:
            warnings.warn(
                f"{path}: saved by {len(rng)} process(es), resumed by {self.ctx.world_size}: "
                "random generators are reseeded",
                stacklevel=2,
            )
            torch.manual_seed(self.config.run.seed * 1000 + self.ctx.rank + 1 + self.step)

    # -- the loop -----------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        """Train to `total_steps` (or a stop signal); the monitor is closed whatever happens."""
        start_step, start_time = self.step, time.time()
        self._announce()
        self.sam.train()
        self._window = _Window()
        try:
            with StopRequest() as stop:
                interrupted = self._loop(stop)
            return self._finish(interrupted, stop.signal, start_step, time.time() - start_time)
        finally:
            self.monitor.close()

    def _announce(self) -> None:
        report = trainable_parameters(self.sam)
        self.monitor.event(
            "start",
            step=self.step,
            total_steps=self.total_steps,
            steps_per_epoch=self.steps_per_epoch,
            decay_steps=self.decay_steps,
            world_size=self.ctx.world_size,
            device=str(self.device),
            config_hash=self.config.config_hash(),
            trainable_params=report.trainable,
            total_params=report.total,
        )
        model = self.config.model
        weights = model.checkpoint or ("bundled weights" if model.model_type == "tiny" else "random weights")
        capped = (
            f" (run.num_workers={self.config.run.num_workers} capped at the CPUs available)"
            if self.resources.workers < self.config.run.num_workers
            else ""
        )
        self.monitor.write(
            f"garasam train: {len(self.dataset)} samples, {self.total_steps} steps "
            f"({self.steps_per_epoch}/epoch), batch {self.config.run.batch_size} on {self.ctx.world_size} "
            f"process(es), {self.device}; model {model.model_type} ({weights}), "
            f"{self.config.adapter_config().adapter_type} adapters; {self.resources.describe()}{capped}; "
            f"{report}" + (f"; resuming at step {self.step}" if self.step else "")
        )

    def _loop(self, stop: StopRequest) -> bool:
        """The epochs and steps; returns True when a signal stopped the run (after a checkpoint)."""
        tick = time.perf_counter()
        while self.step < self.total_steps:
            epoch, batch_in_epoch = divmod(self.step, self.steps_per_epoch)
            self.sampler.set_epoch(epoch, batch_in_epoch)
            for batch in self.loader:
                stats, grad_norm = self._train_step(batch, lambda: stop.signal is not None)
                self.step += 1
                now = time.perf_counter()
                rate = stats["images"] / max(now - tick, 1e-9)  # data loading included
                self._throughput = rate if self._throughput == 0 else 0.9 * self._throughput + 0.1 * rate
                tick = now
                self._record(batch, stats, grad_norm)
                stopping = stats["stop"] > 0  # reduced: every rank stops at the same step
                last = self.step >= self.total_steps
                improved = not stopping and self._maybe_validate(last)
                if stopping or last or improved or self.step % self.config.checkpoint.every_steps == 0:
                    self._save()
                if stopping:
                    return True
                if last:
                    return False
        return False

    def _record(self, batch: TrainBatch, stats: dict[str, float], grad_norm: float) -> None:
        """Count, log and report one step; too many NaN/inf steps in a row end the run."""
        config, monitor = self.config, self.monitor
        self.bad_samples += int(stats["bad_samples"])
        for problem in batch.problems:
            self._first_problem = self._first_problem or problem
            monitor.event("bad_sample", step=self.step, problem=problem)
        if math.isfinite(stats["loss"]) and math.isfinite(grad_norm):
            self._consecutive_nonfinite = 0
            self._window.add(stats)
            self.last_loss = stats["loss"] / max(stats["objects"], 1)
        else:
            self._consecutive_nonfinite += 1
            self.nonfinite_total += 1
            monitor.event("nonfinite", step=self.step, loss=stats["loss"], grad_norm=grad_norm)
            if self._consecutive_nonfinite >= config.run.max_nonfinite_steps:
                raise TrainingDiverged(
                    f"the loss or gradient was NaN/inf in {self._consecutive_nonfinite} consecutive steps "
                    f"(last at step {self.step}); the last good checkpoint is kept in "
                    f"{self.output / ckpt.CHECKPOINTS}. Try a lower learning rate "
                    f"(optim.lr={config.optim.lr:g} -> {config.optim.lr / 10:g}), full precision "
                    "(run.precision=fp32), a tighter clip (optim.grad_clip), or check the data for broken masks"
                )
        if self.step % config.logging.every_steps == 0 or self.step == self.total_steps:
            self._log(self._window, grad_norm)
            self._window = _Window()
        monitor.advance(
            1,
            loss=f"{self.last_loss:.4f}" if self.last_loss is not None else "nan",
            img_s=f"{self._throughput:.1f}",
        )

    def _maybe_validate(self, last: bool) -> bool:
        """Validate when due (every_steps, else each epoch; and at the end); True on a new best."""
        if self.validator is None:
            return False
        every = self.config.validation.every_steps
        due = self.step % every == 0 if every is not None else self.step % self.steps_per_epoch == 0
        if not (due or last):
            return False
        self.validation = self._validate()
        score = self.validation["mean"]
        if not math.isfinite(score) or (self.best is not None and score <= self.best["val_iou"]):
            return False
        self.best = {"step": self.step, "val_iou": score}
        return True

    def _finish(self, interrupted: bool, signum: int | None, start_step: int, seconds: float) -> TrainResult:
        config, monitor = self.config, self.monitor
        adapters_dir = best_dir = None
        if not interrupted and self.ctx.is_main:
            adapters_dir = ckpt.export_adapters(
                self.output,
                self.sam,
                extra={"training_step": self.step, "config_hash": config.config_hash(), "best": self.best},
            )
            best_dir = ckpt.export_best(self.output)
            # what the adapters saw, so that an evaluation on the same images can say so
            for folder in (adapters_dir, best_dir):
                if folder is not None:
                    write_training_data(
                        folder, config.data.train, (self.data.image_path(i) for i in self.dataset.indices)
                    )
        status = "interrupted" if interrupted else "completed"
        monitor.event(
            "end",
            step=self.step,
            status=status,
            seconds=round(seconds, 2),
            nonfinite_steps=self.nonfinite_total,
            best=self.best,
            best_adapters=None if best_dir is None else str(best_dir),
        )
        if interrupted:
            name = signal.Signals(signum).name if signum else "signal"
            monitor.write(
                f"garasam train: {name} received: checkpoint written at step {self.step}; resume with --resume"
            )
        if self.bad_samples:
            monitor.write(
                f"garasam train: {self.bad_samples} bad sample(s) skipped (see log.jsonl), "
                f"first: {self._first_problem or 'on another process'}"
            )
        distributed.barrier(self.ctx)
        images = (self.step - start_step) * config.run.batch_size
        return TrainResult(
            output_dir=self.output,
            adapters_dir=adapters_dir,
            status=status,
            steps=self.step,
            epochs_done=self.step / self.steps_per_epoch,
            seconds=seconds,
            images_per_second=images / seconds if seconds > 0 else 0.0,
            last_loss=self.last_loss,
            nonfinite_steps=self.nonfinite_total,
            bad_samples=self.bad_samples,
            best=self.best,
            best_adapters_dir=best_dir,
            validation=self.validation,
            signal=signum if interrupted else None,
        )

    def _train_step(
        self, batch: TrainBatch, stop_requested: Callable[[], bool]
    ) -> tuple[dict[str, float], float]:
        """Forward, backward, clip and (if everything is finite on every rank) an optimizer step.

        `stop_requested` is read just before the statistics are reduced, so a signal that arrives
        during the step is agreed on by every rank at the end of this very step.
        """
        with torch.no_grad():
            device_batch = to_device(batch, self.transform, self.config.prompts.multimask, self.device)
        # The schedule is a function of the step alone (no scheduler state to drift on resume or skip).
        lr = self.config.optim.lr * lr_factor(self.step, self.decay_steps, self.config.schedule.gamma)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        sums = forward_backward(self.module, device_batch, self.weights, self.autocast, self.ctx)
        clip = self.config.optim.grad_clip
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, clip if clip is not None else math.inf))
        extra = [
            device_batch.num_objects,
            device_batch.num_images,
            len(batch.problems),
            float(stop_requested()),
        ]
        stats = torch.cat(
            [
                torch.stack([sums[k] for k in _LOSS_TERMS]).double(),
                torch.tensor(extra).double().to(self.device),
            ]
        )
        distributed.all_reduce_sum(stats, self.ctx)
        values = dict(zip(_STATS, stats.tolist(), strict=True))
        # The gradient is already reduced, so every rank sees the same norm and takes the same decision.
        if math.isfinite(values["loss"]) and math.isfinite(grad_norm):
            self.optimizer.step()
        return values, grad_norm

    def _log(self, window: _Window, grad_norm: float) -> None:
        if not self.ctx.is_main:
            return
        values = window.means()
        lr = self.optimizer.param_groups[0]["lr"]
        images_per_s = window.images / window.seconds() if window.seconds() > 0 else 0.0
        scalars = {f"train/{k}": v for k, v in values.items()}
        scalars.update({"train/lr": lr, "train/images_per_s": images_per_s, "train/grad_norm": grad_norm})
        scalars["train/nonfinite_steps"] = float(self.nonfinite_total)
        gates: dict[str, float] = {}
        if self.prompted.gates:  # the last training batch's
            for summary in self.prompted.gates.summary():
                block = summary.name.removeprefix("vision_encoder.").removesuffix(".attn.qkv")
                gates[f"gates/mean_active_rank/{block}"] = float(summary.mean_active_rank.mean())
                gates[f"gates/high_fraction/{block}"] = float(summary.high_fraction.mean())
        self.monitor.scalars(self.step, scalars | gates)
        self.monitor.event(
            "train",
            step=self.step,
            epoch=self.step / self.steps_per_epoch,
            lr=lr,
            images_per_s=round(images_per_s, 3),
            grad_norm=grad_norm,
            **{k: round(v, 6) for k, v in values.items()},
            **(
                {
                    "mean_active_rank": {
                        k.rsplit("/", 1)[1]: round(v, 3) for k, v in gates.items() if "rank" in k
                    }
                }
                if gates
                else {}
            ),
        )

    def _validate(self) -> dict[str, float]:
        assert self.validator is not None
        result = self.validator(self.sam, self.device)
        if self.ctx.is_main:
            self.monitor.scalars(self.step, {f"val/iou/{k}": v for k, v in result.items()})
            self.monitor.event("val", step=self.step, iou={k: round(v, 5) for k, v in result.items()})
            self.monitor.write(
                f"step {self.step}: validation IoU mean {result['mean']:.4f}, degraded {result['degraded']:.4f}, "
                f"clean {result.get('clean', float('nan')):.4f}"
            )
        return result

    def _save(self) -> None:
        """Every rank contributes its RNG state; rank 0 writes the checkpoint."""
        rng = distributed.all_gather_object(ckpt.rng_state(), self.ctx)
        if self.ctx.is_main:
            state = {
                "step": self.step,
                "epoch": self.step // self.steps_per_epoch,
                "batch_in_epoch": self.step % self.steps_per_epoch,
                "dataset_size": len(self.dataset),
                "optimizer": self.optimizer.state_dict(),
                "schedule": {
                    "lr": self.config.optim.lr,
                    "decay_steps": self.decay_steps,
                    "gamma": self.config.schedule.gamma,
                },
                "rng": rng,
                "config_hash": self.config.config_hash(),
                "config": self.config.to_dict(),
                "best": self.best,
                "nonfinite_total": self.nonfinite_total,
                "bad_samples": self.bad_samples,
                "world_size": self.ctx.world_size,
                "garasam_version": __version__,
            }
            path = ckpt.save_checkpoint(self.output, self.step, self.sam, state)
            if self.best is not None and self.best["step"] == self.step:
                ckpt.write_best(self.output, self.step, self.best["val_iou"])
            ckpt.prune(self.output, self.config.checkpoint.keep_last)
            self.monitor.event("checkpoint", step=self.step, path=str(path))
        distributed.barrier(self.ctx)


class _Window:
    """Sums of the reduced statistics since the last log line."""

    def __init__(self) -> None:
        self.sums = dict.fromkeys(_STATS, 0.0)
        self.start = time.time()

    def add(self, stats: dict[str, float]) -> None:
        for key, value in stats.items():
            self.sums[key] += value

    @property
    def images(self) -> float:
        return self.sums["images"]

    def seconds(self) -> float:
        return time.time() - self.start

    def means(self) -> dict[str, float]:
        objects = max(self.sums["objects"], 1.0)
        return {k: self.sums[k] / objects for k in _LOSS_TERMS}


def build_training_model(config: TrainConfig, device: torch.device) -> nn.Module:
    """SAM with the run's adapters injected, fast encoder and checkpointing as configured."""
    if config.model.checkpoint is None and config.model.model_type != "tiny":
        warnings.warn(
            f"model.checkpoint is not set: training adapters on a randomly initialised {config.model.model_type} "
            "(pass model.checkpoint=/path/to/sam_weights for a real run)",
            stacklevel=3,
        )
    init = None if config.model.init_adapters is None else init_adapters_matching(config)
    spec = ModelSpec(config.model.model_type, config.model.checkpoint, init)
    # the fast encoder after, by training's rule: asked for and impossible is an error, not a no-op
    sam = build_model(
        spec, device=device, inject=config.adapter_config(), trainable=True, fast=False, random_weights=True
    )
    apply_fast_encoder(sam, config.run.fast_encoder, config.run.precision)
    if config.run.activation_checkpointing:
        enable_activation_checkpointing(sam)
    return sam


def init_adapters_matching(config: TrainConfig) -> Path:
    """`model.init_adapters`, once its adapters are known to be the ones the run's recipe describes."""
    from garasam.adapters.io import saved_adapter_config

    directory = Path(config.model.init_adapters)
    saved = saved_adapter_config(directory).to_dict()
    wanted = config.adapter_config().to_dict()
    differ = sorted(key for key in saved.keys() | wanted.keys() if saved.get(key) != wanted.get(key))
    if differ:
        details = "; ".join(f"{key}: saved {saved.get(key)!r}, run {wanted.get(key)!r}" for key in differ)
        raise ConfigError(
            f"model.init_adapters {directory}: these adapters differ from the run's adapter section "
            f"({details}); set the adapter section to theirs (e.g. adapter.{differ[0]}=...)"
        )
    return directory


def _ignore_signals(worker_id: int) -> None:
    """Loader workers leave SIGINT/SIGTERM to the main process, which checkpoints and then stops them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def train(config: TrainConfig) -> TrainResult:
    """Train adapters as `config` says; under torchrun, every process calls this."""
    ctx = join_process_group(config.run.device)
    try:
        with _deterministic(config.run.deterministic):
            return Trainer(config, ctx).run()
    finally:
        leave_process_group(ctx)


@contextlib.contextmanager
def _deterministic(enabled: bool) -> Iterator[None]:
    """torch's deterministic algorithms for the run only (the setting is process-wide)."""
    if not enabled:
        yield
        return
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    benchmark = torch.backends.cudnn.benchmark
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS workspaces
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark = benchmark
