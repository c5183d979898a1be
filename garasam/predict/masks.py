"""Mask utilities for prediction: COCO RLE, boxes from masks, NMS, small-region cleanup.

Non-maximum suppression is written in torch here because transformers' mask-generation post-processing
imports torchvision for it, and torchvision is not a garasam dependency (PyPI's wheels do not import
beside every torch build).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils


def encode_rle(mask: np.ndarray) -> dict[str, object]:
    """A bool H x W mask -> COCO compressed RLE with `counts` as text (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict[str, object]) -> np.ndarray:
    """COCO RLE (counts as text or bytes) -> bool H x W mask."""
    counts = rle["counts"]
    compressed = {
        "size": list(rle["size"]),
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }
    return mask_utils.decode(compressed).astype(bool)


def coco_bbox(mask: np.ndarray) -> list[int]:
    """COCO's [x, y, width, height] of a bool mask (width counts pixels); [0, 0, 0, 0] when empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0, 0, 0, 0]
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Bool masks [N, H, W] -> XYXY boxes [N, 4] with inclusive pixel indices; [0, 0, 0, 0] when empty."""
    if masks.shape[0] == 0:
        return torch.zeros((0, 4), dtype=torch.float32, device=masks.device)
    height, width = masks.shape[-2:]
    rows, cols = masks.any(-1), masks.any(-2)
    ys = torch.arange(height, device=masks.device)
    xs = torch.arange(width, device=masks.device)
    top = torch.where(rows, ys, height).amin(-1)
    bottom = torch.where(rows, ys, -1).amax(-1)
    left = torch.where(cols, xs, width).amin(-1)
    right = torch.where(cols, xs, -1).amax(-1)
    boxes = torch.stack([left, top, right, bottom], -1).float()
    return boxes * (bottom >= top)[:, None]


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_iou(boxes: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of XYXY boxes [N, 4] -> [N, N] (torchvision's convention: area = width x height)."""
    area = box_area(boxes)
    top_left = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    bottom_right = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    union = area[:, None] + area[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Greedy NMS within each group: indices of the kept boxes, highest score first (torchvision's contract)."""
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    sorted_boxes, sorted_groups = boxes[order].float(), groups[order]
    overlaps = (box_iou(sorted_boxes) > iou_threshold) & (sorted_groups[:, None] == sorted_groups[None, :])
    overlaps = overlaps.cpu().numpy()
    removed = np.zeros(len(order), dtype=bool)
    for i in range(len(order)):
        if not removed[i]:
            removed[i + 1 :] |= overlaps[i, i + 1 :]
    return order[torch.from_numpy(~removed).to(order.device)]


def remove_small_regions(mask: np.ndarray, area: int, mode: str) -> tuple[np.ndarray, bool]:
    """Fill holes ("holes") or drop islands ("islands") smaller than `area` pixels (8-connected).

    Returns the mask and whether it changed. As in SAM's automatic generator, a mask whose islands
    are all small keeps its largest one rather than vanishing.
    """
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    holes = mode == "holes"
    working = (np.asarray(mask, dtype=bool) ^ holes).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(working, connectivity=8)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    small = [i + 1 for i, size in enumerate(sizes) if size < area]
    if not small:
        return mask, False
    if holes:
        return mask | np.isin(labels, small), True
    keep = [i for i in range(1, count) if i not in small] or [int(np.argmax(sizes)) + 1]
    return np.isin(labels, keep), True
