"""Train the bundled `sam2.1_tiny` from scratch on clean `source`-family scenes and clips
(`garasam pretrain-tiny-sam2`), in two stages, as the bundled tiny SAM is for images.

- `images`: the image path (Hiera encoder, FPN neck, prompt encoder, mask decoder) on clean 256 x
  256 source scenes, SAM's recipe in miniature: per object a box and 1-3 clicks, 20 x focal + dice
  on the masks (best of three for a single click), MSE on the IoU head, and a binary cross-entropy
  teaching the object-score head that a prompted object is present. From scratch, a Hiera this
  small stays at "all background" for over 1000 steps on a CPU (two runs of 25 minutes), so the
  stage starts from the bundled tiny SAM (trained on the same clean scenes): its prompt encoder and
  decoder seed SAM 2.1's (same shapes; the high-resolution projections start at zero, so the seeded
  decoder first reads the coarse map only), and the coarse FPN map is distilled towards the tiny
  SAM's image embedding (MSE, weight `distill`), as MobileSAM distils SAM's encoder. Written as a
  whole video model (its memory modules still random), so the next stage and `build_sam` read one
  file.
- `video`: every parameter on clean source clips (`garasam.data.synthetic_video`) with the video
  trainer's clip loss (`garasam.video.training.clip_loss`: prompts on the first frame, a correction
  click, tracking with memory, the loss over every frame, the object score trained on whether the
  object is visible), so that the memory attention, the memory encoder and the object pointers learn
  to follow objects.

Degradations are never seen, so they hurt the model as they hurt SAM 2.1. Each stage may run again
from the previous stage's weights (`--init`): the schedule starts afresh.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm
from transformers import SamModel

from garasam.assembly import encode, release_valid_area
from garasam.data.prompts import mask_box, sample_points
from garasam.data.synthetic import generate_scene
from garasam.data.synthetic_video import generate_clip
from garasam.data.transforms import SamTransform
from garasam.io import atomic_write_text
from garasam.models.build import build_sam
from garasam.models.checkpoint import save_sam
from garasam.models.features import decode
from garasam.models.sam2_video import image_view
from garasam.runtime import pick_device
from garasam.train.losses import LossWeights, mask_losses
from garasam.train.pretrain_tiny import hardware_name, warmup_cosine
from garasam.video.predictor import VideoPredictor
from garasam.video.train_config import VideoTrainConfig
from garasam.video.training import ClipSample, clip_loss

MODEL_TYPE = "sam2.1_tiny"
SIDE = 256
MAX_POINTS = 3
HELD_OUT_SEED = 90_000_000  # held-out scenes and clips: beyond every training stream


@dataclass
class Sam2PretrainConfig:
    stage: str = "images"  # "images" or "video"
    out: Path = Path("sam2.1_tiny.safetensors")
    init: Path | None = None  # the previous stage's (or run's) weights; None: from scratch
    steps: int = 4000
    time_budget: float | None = None  # seconds; the schedule follows whichever ends first
    batch_size: int = 16  # scenes per step (images) or clips per step (video)
    objects: int = 4  # per scene (images) or clip (video)
    clip_frames: int = 4
    lr: float = 6e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    seed: int = 0
    device: str = "auto"
    eval_items: int = 50
    distill: float = 1.0  # images stage: weight of the coarse map's distillation from the tiny SAM


def pretrain(config: Sam2PretrainConfig) -> dict[str, Any]:
    """Run one stage; write the weights (a whole video model) and a JSON card beside them."""
    if config.stage not in ("images", "video"):
        raise ValueError(f"stage must be images or video, got {config.stage!r}")
    device = pick_device(config.device)
    torch.manual_seed(config.seed)
    model = build_sam(MODEL_TYPE, config.init, device=device, pretrained=False, video=True)
    step_fn, seeded = _video_step, None
    if config.stage == "images":
        teacher = build_sam("tiny", device=device).eval().requires_grad_(False)
        if config.init is None:
            seeded = seed_from_tiny_sam(model, teacher)
        step_fn = partial(_image_step, teacher=teacher if config.distill > 0 else None)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    rng = np.random.default_rng([config.seed, 1 if config.stage == "images" else 2])
    start, history, step = time.time(), [], 0
    bar = tqdm(
        total=config.steps, desc=f"pretrain {MODEL_TYPE} ({config.stage})", unit="step", dynamic_ncols=True
    )
    while True:
        progress = max(step / config.steps, (time.time() - start) / (config.time_budget or math.inf))
        if progress >= 1:
            break
        for group in optimizer.param_groups:
            group["lr"] = config.lr * warmup_cosine(step, progress, config.warmup_steps)
        loss = step_fn(model, config, rng, step, device)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        release_valid_area(model)
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        step += 1
        bar.update(1)
        if step % 25 == 0:
            history.append(
                {"step": step, "seconds": round(time.time() - start, 1), "loss": round(loss.item(), 4)}
            )
            bar.set_postfix(loss=f"{history[-1]['loss']:.3f}")
    bar.close()
    model.eval()
    card = {
        "model_type": MODEL_TYPE,
        "stage": config.stage,
        "parameters": sum(p.numel() for p in model.parameters()),
        "training": asdict(config)
        | {
            "out": str(config.out),
            "init": str(config.init),
            "steps_done": step,
            "seconds": round(time.time() - start, 1),
            "seeded_from_tiny_sam": seeded,
        },
        "hardware": hardware_name(device),
        "held_out": held_out_check(model, config.eval_items, device),
        "loss_history": history,
    }
    save_sam(model.float().cpu(), config.out)
    atomic_write_text(Path(config.out).with_suffix(".json"), json.dumps(card, indent=2, default=str) + "\n")
    return card


def seed_from_tiny_sam(model: torch.nn.Module, tiny_sam: SamModel) -> int:
    """Copy the tiny SAM's prompt encoder, mask decoder and Fourier tables into SAM 2.1's (the same
    shapes by the type's design; only names differ) and zero the decoder's projections of the two
    high-resolution maps, so that the seeded decoder starts as the tiny SAM's. Returns the tensors
    copied; a name or shape without its counterpart is an error, never skipped."""
    ours = model.state_dict()
    copied = 0
    with torch.no_grad():
        for name, tensor in tiny_sam.state_dict().items():
            if name.startswith("vision_encoder."):
                continue
            name = name.replace(".out_proj.", ".o_proj.").replace(".mlp.lin1.", ".mlp.proj_in.")
            name = name.replace(".mlp.lin2.", ".mlp.proj_out.")
            row = None
            if name.startswith("prompt_encoder.point_embed."):  # one Embedding per label -> one table
                row, name = int(name.split(".")[2]), "prompt_encoder.point_embed.weight"
            target = ours.get(name)
            if target is not None and row is not None:
                target, tensor = target[row], tensor[0]
            if target is None or target.shape != tensor.shape:
                raise ValueError(
                    f"seed_from_tiny_sam: the tiny SAM's {name} has no counterpart in {MODEL_TYPE}"
                )
            target.copy_(tensor)
            copied += 1
        for level in ("conv_s0", "conv_s1"):
            getattr(model.mask_decoder, level).weight.zero_()
            getattr(model.mask_decoder, level).bias.zero_()
    return copied


def _image_step(
    model: torch.nn.Module,
    config: Sam2PretrainConfig,
    rng: np.random.Generator,
    step: int,
    device: torch.device,
    teacher: SamModel | None,
) -> torch.Tensor:
    """One batch of clean scenes: boxes and 1-3 clicks per object, every head trained; with a
    teacher, the coarse map (before the no-memory embedding) distilled towards its embedding."""
    transform = SamTransform(SIDE, square=True)
    scenes = [
        generate_scene(config.seed * 10_000_000 + step * config.batch_size + i, (SIDE, SIDE), "source")
        for i in range(config.batch_size)
    ]
    count = int(rng.integers(1, MAX_POINTS + 1))
    images, masks, points, boxes = [], [], [], []
    for scene in scenes:
        chosen = np.resize(rng.permutation(len(scene.masks)), config.objects)
        images.append(torch.from_numpy(np.ascontiguousarray(scene.image.transpose(2, 0, 1))))
        masks.append(np.stack([scene.masks[i] for i in chosen]))
        points.append(np.stack([sample_points(scene.masks[i], count, rng)[0] for i in chosen]))
        boxes.append(np.stack([mask_box(scene.masks[i], 0.1, rng) for i in chosen]))
    pixels = transform.preprocess(torch.stack(images).to(device))
    features, _ = encode(image_view(model), pixels, [(SIDE, SIDE)] * len(scenes))
    target = torch.from_numpy(np.stack(masks)).to(device)
    low = None
    total = 0.0
    if teacher is not None:
        with torch.no_grad():
            taught = teacher.get_image_embeddings(pixels)
        coarse = features.embeddings - model.no_memory_embedding.reshape(1, -1, 1, 1)
        total = config.distill * F.mse_loss(coarse, taught)
    for prompt in ("points", "box"):
        if prompt == "points":
            coords = torch.from_numpy(np.stack(points)).to(device)
            out = decode(
                image_view(model),
                features,
                input_points=coords,
                input_labels=torch.ones(coords.shape[:-1], dtype=torch.long, device=device),
                multimask_output=count == 1,
            )
        else:
            out = decode(
                image_view(model),
                features,
                input_boxes=torch.from_numpy(np.stack(boxes)).to(device),
                multimask_output=False,
            )
        low = low or out.pred_masks.shape[-1]
        small = F.interpolate(target.float(), (low, low), mode="area") >= 0.5
        total = total + mask_losses(out.pred_masks, out.iou_scores, small).total
        total = total + F.binary_cross_entropy_with_logits(
            out.object_score_logits.float(), torch.ones_like(out.object_score_logits, dtype=torch.float32)
        )
    return total


def _video_step(
    model: torch.nn.Module,
    config: Sam2PretrainConfig,
    rng: np.random.Generator,
    step: int,
    device: torch.device,
) -> torch.Tensor:
    """A batch of clean source clips tracked with the clip loss (object scores trained)."""
    recipe = VideoTrainConfig.model_validate(
        {"prompts": {"corrections": 1}, "data": {"frames": config.clip_frames}}
    )
    predictor = VideoPredictor(model)
    weights = LossWeights(20.0, 1.0, 0.0)
    losses = []
    for index in range(config.batch_size):
        clip = generate_clip(
            config.seed * 10_000_000 + step * config.batch_size + index,
            (SIDE, SIDE),
            config.clip_frames,
            "source",
        )
        objects = sorted(clip.masks[0])[: config.objects]
        prompts = {}
        for obj in objects:
            mask = clip.masks[0][obj]
            kind = ("clicks", "box", "mask")[int(rng.integers(3))]
            value = (
                sample_points(mask, int(rng.integers(1, MAX_POINTS + 1)), rng)[0]
                if kind == "clicks"
                else (mask_box(mask, 0.1, rng) if kind == "box" else mask)
            )
            prompts[obj] = (kind, value)
        annotations = {t: {o: m[o] for o in objects} for t, m in enumerate(clip.masks)}
        sample = ClipSample(f"source{index}", "clean", clip.frames, annotations, prompts)
        loss, _ = clip_loss(predictor, sample, recipe, weights, object_weight=1.0)
        losses.append(loss)
    return torch.stack(losses).mean()


@torch.inference_mode()
def held_out_check(model: torch.nn.Module, items: int, device: torch.device) -> dict[str, float]:
    """A quick check on held-out clean source data (not the evaluation protocol): mean IoU of a box
    prompt on scenes, and of tracking from a box on the first frame of 6-frame clips (frames 1-5)."""
    predictor = VideoPredictor(model)
    scene_ious, track_ious = [], []
    for k in range(items):
        clip = generate_clip(HELD_OUT_SEED + k, (SIDE, SIDE), 6, "source")
        state = predictor.init_state(clip.frames)
        for obj, mask in clip.masks[0].items():
            _, ids, logits = predictor.add_new_points_or_box(state, 0, obj, box=mask_box(mask))
            scene_ious.append(_iou(logits[ids.index(obj), 0].cpu().numpy() > 0, mask))
        for frame, ids, logits in predictor.propagate_in_video(state):
            if frame == 0:
                continue
            for row, obj in enumerate(ids):
                truth = clip.masks[frame][obj]
                if truth.any():
                    track_ious.append(_iou(logits[row, 0].cpu().numpy() > 0, truth))
    return {
        "box_iou": round(100 * float(np.mean(scene_ious)), 2),
        "tracking_iou": round(100 * float(np.mean(track_ious)), 2),
    }


def _iou(prediction: np.ndarray, truth: np.ndarray) -> float:
    union = (prediction | truth).sum()
    return float((prediction & truth).sum() / union) if union else 1.0
