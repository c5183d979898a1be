"""One optimisation step: the prompted forward (the encoder once per image through
`garasam.assembly.encode`, the decoder per prompt group), the losses, the backward, and the
learning-rate schedule."""

from __future__ import annotations

import torch
from torch import nn

from garasam.assembly import Gates, encode, release_valid_area
from garasam.models.features import decode
from garasam.runtime import (
    DistContext,
)
from garasam.train import distributed, losses
from garasam.train.config import TrainConfig
from garasam.train.data import (
    DeviceBatch,
)

# Order of the per-step statistics reduced over processes (sums and counts).
_LOSS_TERMS = ("loss", "focal", "dice", "iou_mse", "iou")


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


def lr_factor(step: int, decay_steps: list[int], gamma: float) -> float:
    """Step decay: x gamma at each decay step passed."""
    return gamma ** sum(step >= d for d in decay_steps)


def decay_steps_for(config: TrainConfig, steps_per_epoch: int, total_steps: int) -> list[int]:
    """Decay epochs in steps; with max_steps they scale to the run length (epoch 10 of 20 -> half-way)."""
    s = config.schedule
    if config.run.max_steps is not None:
        return [max(1, round(total_steps * e / s.epochs)) for e in s.decay_epochs]
    return [max(1, round(e * steps_per_epoch)) for e in s.decay_epochs]
