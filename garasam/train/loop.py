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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from garasam.adapters import (
    trainable_parameters,
)
from garasam.data.provenance import write_training_data
from garasam.data.transforms import SamTransform
from garasam.errors import ConfigError, GarasamError
from garasam.models.features import input_geometry
from garasam.outputs import claim_output
from garasam.runtime import (
    DistContext,
    StopRequest,
    autocast_for,
    join_process_group,
    leave_process_group,
    uses_bf16,
)
from garasam.train import checkpoint as ckpt
from garasam.train import distributed
from garasam.train.config import TrainConfig
from garasam.train.data import (
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
from garasam.train.resume import prepare_output, restore
from garasam.train.setup import _ignore_signals, build_training_model, init_adapters_matching
from garasam.train.step import (
    _LOSS_TERMS,
    PromptedSam,
    decay_steps_for,
    forward_backward,
    loss_weights,
    lr_factor,
)
from garasam.train.validation import Validator
from garasam.version import __version__

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
        fresh = ctx.is_main and ckpt.read_run(self.output) is None
        resume_from = prepare_output(config, self.output, ctx)
        try:
            self._set_up(resume_from, workers)
        except BaseException:
            # refused before its first step: no run.json may stay to refuse the corrected command
            if fresh and not ckpt.list_checkpoints(self.output):
                (self.output / ckpt.RUN_NAME).unlink(missing_ok=True)
            raise

    def _set_up(self, resume_from: Path | None, workers: int) -> None:
        """Data, model, optimiser, DDP and monitor: everything a step needs."""
        config, ctx, run = self.config, self.ctx, self.config.run
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
            resumed = restore(resume_from, config, self.sam, self.optimizer, len(self.dataset), ctx)
            self.step, self.best = resumed.step, resumed.best
            self.nonfinite_total, self.bad_samples = resumed.nonfinite_total, resumed.bad_samples
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


def train(config: TrainConfig) -> TrainResult:
    """Train adapters as `config` says; under torchrun, every process calls this."""
    ctx = join_process_group(config.run.device)
    try:
        with _claim(config, ctx), _deterministic(config.run.deterministic):
            return Trainer(config, ctx).run()
    finally:
        leave_process_group(ctx)


def _claim(config: TrainConfig, ctx: DistContext) -> contextlib.AbstractContextManager:
    """The run folder, checked writable and locked (a requeued job while the old one is alive would
    interleave the log and overwrite checkpoints); only the main process writes it."""
    if config.output_dir is None or (
        Path(config.output_dir).exists() and not Path(config.output_dir).is_dir()
    ):
        return contextlib.nullcontext()  # the Trainer refuses it with the config's words
    return claim_output(config.output_dir, "train", writer=ctx.is_main)


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
