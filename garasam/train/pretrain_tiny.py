"""Train the bundled `tiny` SAM from scratch on clean `source`-family scenes (`garasam pretrain-tiny`).

The tiny model has SAM's exact architecture (windowed and global encoder blocks, prompt encoder,
two-way mask decoder) at a size that runs in milliseconds on a CPU. It is trained on *clean* scenes
of the `source` family only (the SA-1B analogue; adapters are trained on the `target` family), with SAM's recipe in miniature: per object a box or 1-3 points, focal + dice on the masks
(best of three for a single point, one mask for several points and for boxes), MSE on the IoU head.
Degradations are never seen here, so they hurt the model as they hurt SAM, which is what the
adapters then have to recover.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from tqdm import tqdm
from transformers import SamModel

from garasam.data.prompts import eval_prompt, mask_box, sample_points
from garasam.data.synthetic import generate_scene
from garasam.data.transforms import SamTransform
from garasam.io import atomic_write_text
from garasam.models.build import build_sam
from garasam.models.checkpoint import save_sam
from garasam.runtime import pick_device
from garasam.train.losses import mask_losses

MAX_POINTS = 3
HELD_OUT_SEED = 90_000_000
SHAPES = ((256, 256), (192, 256), (256, 192), (224, 256), (256, 160))


@dataclass
class PretrainConfig:
    """Settings of a pretraining run; the defaults produced the bundled weights."""

    # in the working folder: the bundled weights are replaced only when named (--out garasam/assets/...)
    out: Path = Path("tiny_sam.safetensors")
    steps: int = 6000
    time_budget: float | None = None  # seconds; the schedule follows whichever of steps/time ends first
    batch_size: int = 48
    objects_per_image: int = 4
    lr: float = 6e-4
    weight_decay: float = 0.01
    warmup_steps: int = 300
    device: str = "auto"
    workers: int = max(1, (os.cpu_count() or 2) - 1)
    seed: int = 0
    eval_scenes: int = 200
    init: Path | None = None  # continue from these weights (a fresh schedule) instead of from scratch


class SceneStream(IterableDataset):
    """An endless stream of clean training scenes with one random prompt of each kind per object."""

    def __init__(self, seed: int, objects: int, image_size: int) -> None:
        self.seed, self.objects, self.transform = seed, objects, SamTransform(image_size)

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        rng = np.random.default_rng([self.seed, worker])
        index = worker
        while True:
            scene_seed = self.seed * 10_000_000 + index
            index += workers
            shape = SHAPES[rng.integers(len(SHAPES))]
            yield self._item(generate_scene(scene_seed, size=shape, family="source"), rng)

    def _item(self, sample, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        size = self.transform.image_size
        original = sample.image.shape[:2]
        image = self.transform.resize_image(sample.image)
        h, w = image.shape[-2:]
        chosen = rng.permutation(len(sample.masks))[: self.objects]
        chosen = np.resize(chosen, self.objects)  # repeat objects when the scene has fewer
        masks = np.stack([sample.masks[i] for i in chosen])
        points = np.zeros((self.objects, MAX_POINTS, 2), np.float32)
        labels = np.ones((self.objects, MAX_POINTS), np.int64)
        boxes = np.zeros((self.objects, 4), np.float32)
        for row, mask in enumerate(masks):
            coords, point_labels = sample_points(mask, MAX_POINTS, rng)
            points[row] = self.transform.apply_coords(coords, original)
            labels[row] = point_labels
            boxes[row] = self.transform.apply_boxes(mask_box(mask, 0.1, rng)[None], original)[0]
        padded = torch.zeros(3, size, size, dtype=torch.uint8)
        padded[:, :h, :w] = image
        target = torch.zeros(self.objects, size, size, dtype=torch.bool)
        target[:, :h, :w] = self.transform.apply_masks(masks, original)
        return {
            "image": padded,
            "size": torch.tensor([h, w]),
            "masks": target,
            "points": torch.from_numpy(points),
            "labels": torch.from_numpy(labels),
            "boxes": torch.from_numpy(boxes),
        }


def pretrain_tiny(config: PretrainConfig) -> dict[str, Any]:
    """Train tiny SAM from scratch, write its safetensors and a JSON model card next to it."""
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    model = build_sam("tiny", config.init, device=device, pretrained=False).train()
    # SAM's random Fourier matrix for coordinates is a fixed buffer, not a trained weight.
    model.shared_image_embedding.positional_embedding.requires_grad_(False)
    transform = SamTransform(model.config.vision_config.image_size)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
    )
    loader = DataLoader(
        SceneStream(config.seed, config.objects_per_image, transform.image_size),
        batch_size=config.batch_size,
        num_workers=config.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=config.workers > 0,
        worker_init_fn=_one_thread,
    )
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    start, history, step = time.time(), [], 0
    bar = tqdm(total=config.steps, desc="pretrain tiny SAM", unit="step", dynamic_ncols=True)
    for batch in loader:
        progress = max(step / config.steps, (time.time() - start) / (config.time_budget or math.inf))
        if progress >= 1:
            break
        for group in optimizer.param_groups:
            group["lr"] = config.lr * warmup_cosine(step, progress, config.warmup_steps)
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        pixels = transform.preprocess(batch["image"], [tuple(s) for s in batch["size"].tolist()])
        # One point count per step: transformers' SAM still attends to padded points, so never pad.
        num_points = int(torch.randint(1, MAX_POINTS + 1, ()))
        with autocast:
            embeddings = model.vision_encoder(pixels).last_hidden_state
            point_out, box_out = prompted_outputs(model, embeddings, batch, num_points)
        # Loss at the decoder's own resolution (a quarter of the input): 16x cheaper than upsampling.
        low_res = point_out.pred_masks.shape[-1]
        factor = transform.image_size // low_res
        targets = F.interpolate(batch["masks"].float(), size=(low_res, low_res), mode="area") >= 0.5
        sizes = (batch["size"][:, None].expand(-1, config.objects_per_image, -1) + factor - 1) // factor
        point_loss = mask_losses(point_out.pred_masks, point_out.iou_scores, targets, input_sizes=sizes)
        box_loss = mask_losses(box_out.pred_masks, box_out.iou_scores, targets, input_sizes=sizes)
        loss = point_loss.total + box_loss.total
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        bar.update(1)
        if step % 50 == 0:
            record = {"step": step, "seconds": round(time.time() - start, 1), "loss": loss.item()}
            history.append(record)
            bar.set_postfix(loss=f"{record['loss']:.3f}")
    bar.close()
    seconds = time.time() - start
    model.eval()
    card = {
        "model_type": "tiny",
        "config": model.config.vision_config.to_dict()
        | {"decoder": model.config.mask_decoder_config.to_dict()},
        "parameters": sum(p.numel() for p in model.parameters()),
        "training": asdict(config)
        | {"out": str(config.out), "steps_done": step, "seconds": round(seconds, 1)},
        "hardware": hardware_name(device),
        "data": "clean synthetic scenes (garasam.data.synthetic, source family), one box and one 1-3 point prompt "
        "per object, up to 4 objects per image",
        "clear_iou_held_out_source": clear_iou(model, config.eval_scenes, device),
        "loss_history": history,
    }
    save_sam(model.float().cpu(), config.out)
    card_path = Path(config.out).with_suffix(".json")
    atomic_write_text(card_path, json.dumps(card, indent=2, default=str) + "\n")
    return card


def prompted_outputs(
    model: SamModel, embeddings: torch.Tensor, batch: dict[str, torch.Tensor], num_points: int
) -> tuple[Any, Any]:
    """Decoder outputs for the first `num_points` points and for the boxes, with SAM's output choice.

    A single point is ambiguous, so it gets the three-mask output (best of three is trained); several
    points and boxes are not, so they use the single-mask output token. Adapter training and the
    evaluation protocol make the same choice, so the heads they rely on are the heads trained here.
    """
    point_out = model(
        image_embeddings=embeddings,
        input_points=batch["points"][:, :, :num_points],
        input_labels=batch["labels"][:, :, :num_points],
        multimask_output=num_points == 1,
    )
    box_out = model(image_embeddings=embeddings, input_boxes=batch["boxes"], multimask_output=False)
    return point_out, box_out


@torch.inference_mode()
def clear_iou(model: SamModel, scenes: int, device: torch.device) -> dict[str, float]:
    """Mean IoU on held-out clean source scenes with the evaluation prompts (a quick check, not the
    protocol). Their seeds (90,000,000 +) lie beyond every pretraining stream (seed x 10,000,000 +)."""
    transform = SamTransform(model.config.vision_config.image_size)
    totals = {"point": [], "box": []}
    for seed in tqdm(range(scenes), desc="held-out check", unit="scene", leave=False, disable=None):
        sample = generate_scene(HELD_OUT_SEED + seed, family="source")
        original = sample.image.shape[:2]
        image = transform.resize_image(sample.image)
        pixels = transform.preprocess(image[None].to(device))
        embeddings = model.get_image_embeddings(pixels)
        for kind in totals:
            prompts = [transform.apply_prompt(eval_prompt(m, kind), original) for m in sample.masks]
            if kind == "box":
                boxes = torch.tensor(np.stack([p.box for p in prompts]), device=device)[None]
                out = model(image_embeddings=embeddings, input_boxes=boxes, multimask_output=False)
                logits = out.pred_masks[0, :, 0]
            else:
                points = torch.tensor(np.stack([p.points for p in prompts]), device=device)[None]
                labels = torch.tensor(np.stack([p.labels for p in prompts]), device=device)[None]
                out = model(image_embeddings=embeddings, input_points=points, input_labels=labels)
                best = out.iou_scores[0].argmax(-1)
                logits = out.pred_masks[0, torch.arange(len(prompts)), best]
            pred = transform.postprocess_masks(logits.float(), tuple(image.shape[-2:]), original) > 0
            gt = torch.from_numpy(np.stack(sample.masks)).to(device)
            inter = (pred & gt).flatten(1).sum(1).float()
            union = (pred | gt).flatten(1).sum(1).float()
            totals[kind].extend(torch.where(union > 0, inter / union.clamp(min=1), 1.0).tolist())
    return {kind: round(100 * float(np.mean(v)), 2) for kind, v in totals.items()}


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)  # workers draw scenes in numpy; torch threads would only oversubscribe


def warmup_cosine(step: int, progress: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 5% over the run's progress (steps or time)."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def hardware_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    return f"{platform.processor() or platform.machine()} CPU x{os.cpu_count()} (torch {torch.__version__})"
