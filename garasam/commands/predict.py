"""`garasam predict`: prompted or automatic masks for images, as PNGs, overlays and COCO-RLE JSON.

    garasam predict photos/ --box 10,20,200,240 --out masks/
    garasam predict "scans/*.jpg" --point 120,80 --point 30,30,0 --adapters runs/gara/adapters --out masks/
    garasam predict street.png --auto --out masks/

Each `--box` is one prompt (one mask); all `--point`s together are one prompt (clicks on one object,
label 1 = foreground, the default, 0 = background). Every input (images, prompts, checkpoint,
adapters) is checked before anything is written, so a bad argument leaves the output folder untouched.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
import math
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from garasam.argtypes import device, int_at_least, non_negative_int, output_dir, unit_float
from garasam.data.images import IMAGE_SUFFIXES, load_image
from garasam.errors import ConfigError, DataError
from garasam.io import atomic_write_bytes, atomic_write_text
from garasam.models.registry import MODEL_TYPES, encoder_of, model_type_of_config
from garasam.outputs import claim_output
from garasam.predict.automatic import MAX_POINTS_PER_SIDE, AutomaticMaskGenerator, check_auto_size
from garasam.predict.masks import coco_bbox, encode_rle
from garasam.predict.overlay import overlay
from garasam.predict.predictor import block_index, from_pretrained, gate_table
from garasam.predict.prompts import UserPrompt, candidates, segment


def _numbers(text: str, counts: tuple[int, ...], what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in counts:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: every coordinate must be a finite number")
    return values


def parse_box(text: str) -> tuple[float, float, float, float]:
    """'x0,y0,x1,y1' -> an XYXY box in pixels."""
    x0, y0, x1, y1 = _numbers(text, (4,), "x0,y0,x1,y1")
    return (x0, y0, x1, y1)


def parse_point(text: str) -> tuple[float, float, int]:
    """'x,y' or 'x,y,label' (label 1 = foreground, the default, or 0 = background)."""
    values = _numbers(text, (2, 3), "x,y or x,y,label")
    label = values[2] if len(values) == 3 else 1.0
    if label not in (0.0, 1.0):
        raise argparse.ArgumentTypeError(
            f"point label must be 1 (foreground) or 0 (background), got {text!r}"
        )
    return (values[0], values[1], int(label))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files, folders or glob patterns")
    parser.add_argument("--adapters", type=Path, help="adapter folder (from garasam train); none: plain SAM")
    parser.add_argument("--checkpoint", type=Path, help="SAM checkpoint; none: the bundled tiny SAM")
    parser.add_argument(
        "--model-type", choices=sorted(MODEL_TYPES), help="backbone (default: from the adapters)"
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="allow vit_b/l/h without --checkpoint (random weights: for timing and tests only)",
    )
    prompts = parser.add_argument_group("prompts (--box and/or --point, or --auto)")
    prompts.add_argument(
        "--box", type=parse_box, action="append", metavar="x0,y0,x1,y1", help="a box prompt (repeatable)"
    )
    prompts.add_argument(
        "--point",
        type=parse_point,
        action="append",
        metavar="x,y[,label]",
        help="a click; all clicks form one prompt (repeatable)",
    )
    prompts.add_argument("--auto", action="store_true", help="segment everything (grid of point prompts)")
    prompts.add_argument(
        "--multimask",
        action="store_true",
        help="write SAM's three candidate masks per prompt, best first (default: the best one)",
    )
    parser.add_argument("--out", type=output_dir, required=True, help="output folder")
    parser.add_argument("--device", type=device, default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--backend",
        choices=("torch", "onnx"),
        default="torch",
        help="torch, or onnx: the folder of `garasam export` given by --exported, run by ONNX Runtime",
    )
    parser.add_argument("--exported", type=Path, help="an exported model folder (with --backend onnx)")
    auto = parser.add_argument_group("automatic masks (--auto)")
    auto.add_argument(
        "--points-per-side",
        type=int_at_least(1, MAX_POINTS_PER_SIDE),
        default=32,
        help=f"grid of points per side (default: 32), at most {MAX_POINTS_PER_SIDE}",
    )
    auto.add_argument(
        "--pred-iou-thresh",
        type=unit_float,
        help="keep masks whose predicted IoU reaches this (default: 0.88, SAM's; 0.4 for the tiny SAM)",
    )
    auto.add_argument(
        "--stability-score-thresh",
        type=unit_float,
        help="keep masks whose stability (IoU under a shifted threshold) reaches this "
        "(default: 0.95, SAM's; 0.3 for the tiny SAM)",
    )
    auto.add_argument(
        "--min-mask-region-area",
        type=non_negative_int,
        default=0,
        help="fill holes and drop islands smaller than this many pixels",
    )


def run(args: argparse.Namespace) -> int:
    _check_backend(args)
    images = expand_inputs(args.images, outputs_in=args.out)
    prompts = _prompts(args)
    for path in images:
        _check_image(path, prompts, args.auto)
    with claim_output(args.out, "predict"):
        return _predict(args, images, prompts)


def _check_backend(args: argparse.Namespace) -> None:
    """--backend onnx takes its model from --exported only, and segments prompts only."""
    if args.backend == "torch":
        if args.exported is not None:
            raise ConfigError("--exported goes with --backend onnx")
        return
    if args.exported is None:
        raise ConfigError("--backend onnx needs --exported DIR (a folder of garasam export --format onnx)")
    given = [
        flag
        for flag, value in (
            ("--adapters", args.adapters),
            ("--checkpoint", args.checkpoint),
            ("--model-type", args.model_type),
            ("--random-weights", args.random_weights),
        )
        if value
    ]
    if given:
        raise ConfigError(f"--backend onnx runs the exported model as it is: leave out {', '.join(given)}")
    if args.auto:
        raise ConfigError("--auto is not built for --backend onnx yet; use --backend torch")


def _load(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The predictor of the chosen backend and what the JSON files say of its model."""
    if args.backend == "onnx":
        from garasam.deploy import OnnxPredictor

        predictor = OnnxPredictor(args.exported)
        source = predictor.config.get("source") or {}
        return predictor, {
            "model_type": predictor.config.get("model_type"),
            "checkpoint": source.get("checkpoint"),
            "adapters": source.get("adapters"),
            "exported": str(args.exported),
            "precision": predictor.config.get("precision", "fp32"),
        }
    predictor = from_pretrained(
        args.adapters, args.checkpoint, args.model_type, args.device, random_weights=args.random_weights
    )
    return predictor, {
        "model_type": model_type_of_config(predictor.model.config),
        "checkpoint": None if args.checkpoint is None else str(args.checkpoint),
        "adapters": None if args.adapters is None else str(args.adapters),
        "random_weights": predictor.model.garasam_checkpoint is None,
    }


def _gate_rows(predictor: Any) -> list[dict[str, object]]:
    """The image's gate statistics as JSON rows, from either backend."""
    if not hasattr(predictor, "gate_decisions"):
        return gate_table(predictor.gate_summary())
    return [
        {
            "adapter": name,
            "block": block_index(name),
            "mean_active_rank": round(float(decision["active"].mean()), 3),
            "high_fraction": round(float((decision["segment"] > 0).mean()), 4),
        }
        for name, decision in predictor.gate_decisions().items()
    ]


def _predict(args: argparse.Namespace, images: list[Path], prompts: list[UserPrompt]) -> int:
    """Segment every image into `args.out`, then write the run's COCO index of them all."""
    predictor, model_info = _load(args)
    model_type = model_info["model_type"]
    encoder = encoder_of(model_type) if model_type else "custom"  # HQ-SAM / RobustSAM: their encoder's
    iou_default, stability_default = AUTO_THRESHOLDS.get(encoder, AUTO_THRESHOLDS["sam"])
    if args.pred_iou_thresh is None:
        args.pred_iou_thresh = iou_default
    if args.stability_score_thresh is None:
        args.stability_score_thresh = stability_default
    generator = (
        AutomaticMaskGenerator(
            predictor,
            points_per_side=args.points_per_side,
            pred_iou_thresh=args.pred_iou_thresh,
            stability_score_thresh=args.stability_score_thresh,
            min_mask_region_area=args.min_mask_region_area,
        )
        if args.auto
        else None
    )
    # the last run's index goes before the first new mask: an interrupted run must not leave it
    for stale in (COMBINED_IMAGES, COMBINED_RESULTS):
        (args.out / stale).unlink(missing_ok=True)
    total = 0
    coco_images: list[dict[str, Any]] = []
    coco_results: list[dict[str, Any]] = []
    for path, name in tqdm(
        list(zip(images, _output_names(images), strict=True)), desc="predict", disable=None
    ):
        image = load_image(path)
        if generator is not None:
            records = generator.generate(image)
            masks = [r["segmentation"] for r in records]
            entries = [
                {k: r[k] for k in ("predicted_iou", "stability_score", "point_coords")}
                | {"score": r["predicted_iou"]}
                for r in records
            ]
            gates = gate_table(generator.gate_summary())
            if not records:
                warnings.warn(
                    f"{path}: no mask passed the thresholds (--pred-iou-thresh {args.pred_iou_thresh}, "
                    f"--stability-score-thresh {args.stability_score_thresh}); lower them to see more",
                    stacklevel=1,
                )
        else:
            predictor.set_image(image)
            found = [
                (prompt, mask, score)
                for prompt in prompts
                for mask, score in (
                    candidates(predictor, prompt) if args.multimask else [segment(predictor, prompt)]
                )
            ]
            masks = [mask for _, mask, _ in found]
            entries = [{"prompt": prompt.to_json(), "score": score} for prompt, _, score in found]
            gates = _gate_rows(predictor)
        _write_outputs(args.out, name, path, image, masks, entries, prompts, gates, model_info)
        image_id = len(coco_images) + 1
        coco_images.append(
            {
                "id": image_id,
                "file_name": str(path),
                "height": int(image.shape[0]),
                "width": int(image.shape[1]),
            }
        )
        coco_results += [
            {
                "image_id": image_id,
                "category_id": 1,
                "score": e["score"],
                "area": e["area"],
                "bbox": e["bbox"],
            }
            | {"segmentation": e["segmentation"]}
            for e in entries
        ]
        total += len(masks)
    # every mask of the run in COCO's result format, and the images as a COCO file it refers to:
    # pycocotools.coco.COCO("images.json").loadRes("results.json") reads them
    coco = {"images": coco_images, "annotations": [], "categories": [{"id": 1, "name": "object"}]}
    atomic_write_text(args.out / COMBINED_IMAGES, json.dumps(coco, indent=1) + "\n")
    atomic_write_text(args.out / COMBINED_RESULTS, json.dumps(coco_results) + "\n")
    print(f"wrote {total} masks for {len(images)} images to {args.out}")
    return 0


def expand_inputs(items: Sequence[str], outputs_in: Path | None = None) -> list[Path]:
    """Files as given, folders' images (sorted, not recursive) and glob matches, each image once
    however many links lead to it (a symlink loop under `**` repeats one file many times).

    Masks and overlays a run wrote into `outputs_in` are not inputs (`predict photos/ --out photos/`
    run twice would otherwise segment its own outputs); a file named on its own always is."""
    found: dict[str, Path] = {}
    for item in items:
        path = Path(item)
        if glob.has_magic(item):
            matches = _images(Path(m) for m in sorted(glob.glob(item, recursive=True)))
            matches = [m for m in matches if not _is_output(m, outputs_in)]
            if not matches:
                raise DataError(f"{item}: no image files match this pattern")
        elif path.is_dir():
            matches = [m for m in _images(sorted(path.iterdir())) if not _is_output(m, outputs_in)]
            if not matches:
                raise DataError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        elif path.is_file():
            matches = [path]
        elif path.is_symlink():
            raise DataError(f"{path}: a broken symbolic link (its target is gone)")
        else:
            raise DataError(f"{path}: no such file or folder")
        for match in matches:
            found.setdefault(os.path.realpath(match), match)
    return list(found.values())


_OUTPUT_IMAGE = re.compile(r".+_(mask\d+|overlay)\.png")


def _is_output(path: Path, out: Path | None) -> bool:
    """Whether `path` is a mask or overlay that a run wrote into `out`."""
    return (
        out is not None
        and _OUTPUT_IMAGE.fullmatch(path.name) is not None
        and os.path.realpath(path.parent) == os.path.realpath(out)
    )


def _images(candidates: Iterable[Path]) -> list[Path]:
    """The image files among `candidates`; an image name whose link leads nowhere is an error, as a
    damaged image is, not a file silently left out."""
    images = []
    for path in candidates:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.is_symlink() and not path.exists():
            raise DataError(f"{path}: a broken symbolic link (its target is gone)")
        if path.is_file():
            images.append(path)
    return images


def _prompts(args: argparse.Namespace) -> list[UserPrompt]:
    """One prompt per --box; all --point clicks form one prompt, with the --box when there is one."""
    if args.auto:
        if args.box or args.point or args.multimask:
            raise ConfigError("--auto finds every object itself: leave out --box, --point and --multimask")
        return []
    if not args.box and not args.point:
        raise ConfigError("give a prompt: --box x0,y0,x1,y1 and/or --point x,y (or --auto)")
    if not args.point:
        return [UserPrompt(box=box, name=f"--box {i + 1}") for i, box in enumerate(args.box)]
    if args.box and len(args.box) > 1:
        raise ConfigError("--point goes with one --box (together they are one prompt); got several boxes")
    points = tuple((x, y) for x, y, _ in args.point)
    labels = tuple(label for _, _, label in args.point)
    box = args.box[0] if args.box else None
    return [UserPrompt(points=points, labels=labels, box=box, name="--box and --point" if box else "--point")]


def _check_image(path: Path, prompts: list[UserPrompt], auto: bool) -> None:
    """Decode the image fully (a truncated file fails now, not halfway through) and check the prompts."""
    height, width = load_image(path).shape[:2]
    if auto:
        check_auto_size(height, width, str(path))
    for prompt in prompts:
        prompt.check_inside(height, width, str(path))


COMBINED_RESULTS, COMBINED_IMAGES = "results.json", "images.json"
# --auto thresholds (predicted IoU, stability) by model type. SAM's own suit a trained SAM; the tiny SAM
# rarely predicts an IoU above 0.6 on photos, so SAM's pass nothing there. 0.4 / 0.3 keep 11 masks on
# each bundled sample photo (points_per_side 32), measured for issue 20.
AUTO_THRESHOLDS = {"sam": (0.88, 0.95), "tiny": (0.4, 0.3)}


def _output_names(images: list[Path]) -> list[str]:
    """One file-name stem per image, unique even when two folders hold the same name."""
    used = {Path(COMBINED_IMAGES).stem, Path(COMBINED_RESULTS).stem}  # reserved for the run's files
    names = []
    for path in images:
        name, n = path.stem, 1
        while name in used:
            n += 1
            name = f"{path.stem}-{n}"
        used.add(name)
        names.append(name)
    return names


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _write_outputs(
    out: Path,
    name: str,
    source: Path,
    image: np.ndarray,
    masks: list[np.ndarray],
    entries: list[dict[str, Any]],
    prompts: list[UserPrompt],
    gates: list[dict[str, object]],
    model_info: dict[str, Any],
) -> None:
    """Mask PNGs (0/255), an overlay PNG and the JSON (COCO RLE, scores, prompts, gate statistics)."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f"{glob.escape(name)}_mask*.png"):  # a last run's masks of this image
        if re.fullmatch(rf"{re.escape(name)}_mask\d+\.png", stale.name):
            stale.unlink()
    for index, (mask, entry) in enumerate(zip(masks, entries, strict=True), start=1):
        file_name = f"{name}_mask{index}.png"
        atomic_write_bytes(out / file_name, _png(mask.astype(np.uint8) * 255))
        entry.update(
            file=file_name, area=int(mask.sum()), bbox=coco_bbox(mask), segmentation=encode_rle(mask)
        )
    atomic_write_bytes(out / f"{name}_overlay.png", _png(overlay(image, masks, prompts)))
    result = {
        "image": str(source),
        "height": int(image.shape[0]),
        "width": int(image.shape[1]),
        "model": model_info,
        "masks": entries,
        "gates": gates,
    }
    atomic_write_text(out / f"{name}.json", json.dumps(result, indent=1) + "\n")
