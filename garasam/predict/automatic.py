"""Automatic mask generation: segment everything with a grid of point prompts.

The recipe is `segment_anything.SamAutomaticMaskGenerator`'s: prompt a regular grid of points
(optionally again on overlapping crops), keep masks whose predicted IoU and stability score pass
their thresholds, drop masks cut by a crop edge, suppress duplicates with box NMS, and optionally
clean small holes and islands.

Crop boxes and point grids are SAM's (`garasam.predict.grids`, tested against the official helpers;
transformers' `generate_crop_boxes` cannot give layers grids of different sizes). transformers'
`filter_masks` and `post_process_for_mask_generation` do not fit: the first drops the stability
score and the point of each kept mask, which `generate` reports; the second needs torchvision for
NMS. Those steps are written here in torch (`garasam.predict.masks`). The constructor takes the
official generator's arguments, and a model or a `GaraSamPredictor`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from garasam.adapters import GateSummary
from garasam.errors import ConfigError, DataError
from garasam.predict.grids import crop_boxes, layer_grids
from garasam.predict.masks import (
    batched_nms,
    box_area,
    coco_bbox,
    encode_rle,
    masks_to_boxes,
    remove_small_regions,
)
from garasam.predict.predictor import GaraSamPredictor

OutputMode = Literal["binary_mask", "uncompressed_rle", "coco_rle"]
# 128 x 128 = 16384 prompts per crop, 16 times SAM's default grid; 1000 was a million prompts on one
# image, minutes of silent work at 1.7 GB
MAX_POINTS_PER_SIDE = 128
PROGRESS_ABOVE_BATCHES = 16  # SAM's default grid (32 x 32 points, 64 a batch) shows no bar
MIN_SIDE = 2  # a one-pixel-wide image has no shape to find: refused rather than answered with nothing


def check_auto_size(height: int, width: int, where: str = "image") -> None:
    """Automatic masks need an image at least MIN_SIDE pixels a side."""
    if min(height, width) < MIN_SIDE:
        raise DataError(
            f"{where}: {width}x{height} is too small for automatic masks (at least {MIN_SIDE} px a side)"
        )


@dataclass
class _Candidates:
    """Masks that passed the filters, in the full image frame."""

    masks: list[np.ndarray]  # bool H x W
    boxes: torch.Tensor  # [N, 4] XYXY, inclusive
    iou: torch.Tensor  # [N]
    stability: torch.Tensor  # [N]
    points: torch.Tensor  # [N, 2] (x, y) in original pixels
    crop_boxes: torch.Tensor  # [N, 4] XYXY of the crop each mask came from

    def select(self, keep: torch.Tensor) -> _Candidates:
        index = keep.tolist()
        return _Candidates(
            masks=[self.masks[i] for i in index],
            boxes=self.boxes[keep],
            iou=self.iou[keep],
            stability=self.stability[keep],
            points=self.points[keep],
            crop_boxes=self.crop_boxes[keep],
        )

    @staticmethod
    def concat(parts: list[_Candidates]) -> _Candidates:
        return _Candidates(
            masks=[m for p in parts for m in p.masks],
            boxes=torch.cat([p.boxes for p in parts]),
            iou=torch.cat([p.iou for p in parts]),
            stability=torch.cat([p.stability for p in parts]),
            points=torch.cat([p.points for p in parts]),
            crop_boxes=torch.cat([p.crop_boxes for p in parts]),
        )


class AutomaticMaskGenerator:
    """`SamAutomaticMaskGenerator` for a `GaraSamPredictor` (defaults are the official ones).

    Thresholds suit a trained SAM; a barely trained model (like an untrained tiny SAM) predicts low
    IoU scores, so lower `pred_iou_thresh` and `stability_score_thresh` there.
    """

    def __init__(
        self,
        model: GaraSamPredictor | nn.Module,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: OutputMode = "binary_mask",
    ) -> None:
        if (
            points_per_batch < 1
            or crop_n_layers < 0
            or min_mask_region_area < 0
            or crop_n_points_downscale_factor < 1
        ):
            raise ConfigError(
                "points_per_batch and crop_n_points_downscale_factor must be positive, crop_n_layers and "
                "min_mask_region_area non-negative"
            )
        if points_per_side is not None and not 1 <= points_per_side <= MAX_POINTS_PER_SIDE:
            raise ConfigError(
                f"points_per_side must be from 1 to {MAX_POINTS_PER_SIDE}, got {points_per_side}"
            )
        for name, value in (
            ("pred_iou_thresh", pred_iou_thresh),
            ("stability_score_thresh", stability_score_thresh),
            ("box_nms_thresh", box_nms_thresh),
            ("crop_nms_thresh", crop_nms_thresh),
            ("crop_overlap_ratio", crop_overlap_ratio),
        ):
            if not (isinstance(value, int | float) and math.isfinite(value) and 0 <= value <= 1):
                raise ConfigError(f"{name} must be a number from 0 to 1, got {value!r}")
        if not (isinstance(stability_score_offset, int | float) and math.isfinite(stability_score_offset)):
            raise ConfigError(
                f"stability_score_offset must be a finite number, got {stability_score_offset!r}"
            )
        if output_mode not in ("binary_mask", "uncompressed_rle", "coco_rle"):
            raise ConfigError(
                f"output_mode must be 'binary_mask', 'uncompressed_rle' or 'coco_rle', got {output_mode!r}"
            )
        # segment_anything's generator takes the model; a predictor (with adapters, fast path) works too
        self.predictor = model if isinstance(model, GaraSamPredictor) else GaraSamPredictor(model)
        self.grids = layer_grids(points_per_side, crop_n_layers, crop_n_points_downscale_factor, point_grids)
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self._image_gates: list[GateSummary] | None = None

    def gate_summary(self) -> list[GateSummary] | None:
        """Gate decisions on the whole image of the last `generate` call (None without gates)."""
        return self._image_gates

    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """All masks of an H x W x 3 uint8 RGB image.

        Each record has `segmentation` (bool H x W, or COCO RLE with output_mode="coco_rle"), `area`,
        `bbox` (COCO XYWH, width and height counting pixels: one more than segment_anything's), `predicted_iou`, `stability_score`, `point_coords` ([[x, y]]) and `crop_box` (XYWH).
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise DataError(f"expected an H x W x 3 uint8 image, got shape {image.shape} {image.dtype}")
        check_auto_size(image.shape[0], image.shape[1])
        height, width = image.shape[:2]
        boxes = crop_boxes(height, width, self.crop_n_layers, self.crop_overlap_ratio)
        batches = sum(-(-len(self.grids[layer]) // self.points_per_batch) for _, layer in boxes)
        # a dense grid is minutes of work on a CPU: a bar (on a terminal) once it is more than SAM's default
        bar = tqdm(total=batches, desc="automatic masks", unit="batch", leave=False, disable=None)
        bar.disable = bar.disable or batches <= PROGRESS_ABOVE_BATCHES
        parts = []
        with bar:
            for (x0, y0, x1, y1), layer in boxes:
                size = (y1 - y0, x1 - x0)
                points = self.grids[layer] * np.array([size[1], size[0]])  # in the crop's pixels
                resized = torch.as_tensor(
                    self.predictor.transform.apply_coords(points, size), dtype=torch.float32
                )
                parts.append(self._process_crop(image, torch.tensor([x0, y0, x1, y1]), resized, bar))
        found = _Candidates.concat(parts)
        if len(boxes) > 1 and len(found.masks):
            # Duplicates across crops: prefer the mask from the smaller crop (it saw more detail).
            keep = batched_nms(
                found.boxes,
                1.0 / box_area(found.crop_boxes.float()),
                torch.zeros(len(found.masks), dtype=torch.int64),
                self.crop_nms_thresh,
            )
            found = found.select(keep)
        if self.min_mask_region_area > 0 and len(found.masks):
            found = self._remove_small_regions(found)
        return [self._record(found, i) for i in range(len(found.masks))]

    def _process_crop(
        self, image: np.ndarray, crop_box: torch.Tensor, points: torch.Tensor, bar: tqdm
    ) -> _Candidates:
        """Prompt the grid on one crop; return its filtered masks, deduplicated, in the full frame."""
        x0, y0, x1, y1 = (int(v) for v in crop_box)
        height, width = image.shape[:2]
        self.predictor.set_image(np.ascontiguousarray(image[y0:y1, x0:x1]))
        if x0 == 0 and y0 == 0 and x1 == width and y1 == height:
            self._image_gates = self.predictor.gate_summary()
        # the grid comes in the crop's resized frame; map it back to original pixels for the records
        input_h, input_w = self.predictor.input_size
        scale = torch.tensor([(x1 - x0) / input_w, (y1 - y0) / input_h])
        offset = torch.tensor([x0, y0], dtype=torch.float32)
        parts = []
        for start in range(0, len(points), self.points_per_batch):
            batch = points[start : start + self.points_per_batch]
            parts.append(self._process_batch(batch, batch * scale + offset, crop_box, (height, width)))
            bar.update(1)
        found = _Candidates.concat(parts)
        keep = batched_nms(
            found.boxes, found.iou, torch.zeros(len(found.masks), dtype=torch.int64), self.box_nms_thresh
        )
        return found.select(keep)

    def _process_batch(
        self,
        points: torch.Tensor,
        original_points: torch.Tensor,
        crop_box: torch.Tensor,
        image_size: tuple[int, int],
    ) -> _Candidates:
        device = self.predictor.device
        labels = torch.ones((len(points), 1), dtype=torch.int64, device=device)
        logits, iou, _ = self.predictor.predict_torch(
            points[:, None].to(device), labels, multimask_output=True, return_logits=True
        )
        num_masks = logits.shape[1]
        logits, iou = logits.flatten(0, 1), iou.flatten(0, 1).float()
        point_of_mask = original_points.repeat_interleave(num_masks, 0)
        threshold, offset = self.predictor.mask_threshold, self.stability_score_offset
        # stability: IoU of the masks thresholded a little above and a little below the logit threshold
        high = (logits > threshold + offset).sum((-1, -2))
        low = (logits > threshold - offset).sum((-1, -2))
        stability = torch.where(low > 0, high / low.clamp(min=1), torch.zeros_like(iou))
        keep = torch.ones_like(iou, dtype=torch.bool)
        if self.pred_iou_thresh > 0:
            keep &= iou > self.pred_iou_thresh
        if self.stability_score_thresh > 0:
            keep &= stability > self.stability_score_thresh
        binary = logits[keep] > threshold
        boxes = masks_to_boxes(binary)
        x0, y0, x1, y1 = (int(v) for v in crop_box)
        boxes += torch.tensor([x0, y0, x0, y0], dtype=boxes.dtype, device=boxes.device)
        on_edge = _near_crop_edge(boxes, crop_box, image_size)
        binary, boxes = binary[~on_edge].cpu().numpy(), boxes[~on_edge].cpu()
        kept = keep.nonzero()[:, 0].cpu()[~on_edge.cpu()]
        height, width = image_size
        masks = []
        for crop_mask in binary:
            full = np.zeros((height, width), dtype=bool)
            full[y0:y1, x0:x1] = crop_mask
            masks.append(full)
        return _Candidates(
            masks=masks,
            boxes=boxes,
            iou=iou[kept.to(iou.device)].cpu(),
            stability=stability[kept.to(stability.device)].float().cpu(),
            points=point_of_mask[kept],
            crop_boxes=crop_box.float().expand(len(masks), 4),
        )

    def _remove_small_regions(self, found: _Candidates) -> _Candidates:
        """Clean holes and islands; on overlap, prefer masks the cleanup left unchanged (as SAM does)."""
        masks, scores = [], []
        for mask in found.masks:
            mask, filled = remove_small_regions(mask, self.min_mask_region_area, "holes")
            mask, pruned = remove_small_regions(mask, self.min_mask_region_area, "islands")
            masks.append(mask)
            scores.append(0.0 if filled or pruned else 1.0)
        found.masks = masks
        found.boxes = masks_to_boxes(torch.from_numpy(np.stack(masks)))
        keep = batched_nms(
            found.boxes, torch.tensor(scores), torch.zeros(len(masks), dtype=torch.int64), self.box_nms_thresh
        )
        return found.select(keep)

    def _record(self, found: _Candidates, i: int) -> dict[str, Any]:
        mask = found.masks[i]
        cx0, cy0, cx1, cy1 = (float(v) for v in found.crop_boxes[i])
        return {
            "segmentation": _encode(mask, self.output_mode),
            "area": int(mask.sum()),
            "bbox": coco_bbox(mask),  # COCO's: width counts pixels, like garasam predict's JSON
            "predicted_iou": float(found.iou[i]),
            "point_coords": [[float(v) for v in found.points[i]]],
            "stability_score": float(found.stability[i]),
            "crop_box": [cx0, cy0, cx1 - cx0, cy1 - cy0],
        }


def _encode(mask: np.ndarray, output_mode: OutputMode) -> Any:
    if output_mode == "coco_rle":
        return encode_rle(mask)
    if output_mode == "uncompressed_rle":
        return uncompressed_rle(mask)
    return mask


def uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO's uncompressed RLE: run lengths down the columns, starting with a (maybe empty) run of 0s."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs = [0, *runs]
    return {"size": list(mask.shape), "counts": runs}


def _near_crop_edge(boxes: torch.Tensor, crop_box: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Boxes touching a crop edge that is not an image edge: the object continues outside the crop."""
    height, width = image_size
    crop = crop_box.to(boxes).float()
    image = torch.tensor([0, 0, width, height], dtype=torch.float32, device=boxes.device)
    near_crop = torch.isclose(boxes, crop[None], atol=20.0, rtol=0)
    near_image = torch.isclose(boxes, image[None], atol=20.0, rtol=0)
    return (near_crop & ~near_image).any(-1)
