"""`garasam track`: follow objects through a video with SAM 2.1 (and adapters), frame by frame.

    garasam track clip.mp4 --checkpoint sam2.1_hiera_tiny.pt --box 40,30,200,180 --out tracks/
    garasam track frames/ --checkpoint sam2.1_hiera_tiny.pt --point 120,80 --point 60,40,0@12 --out tracks/

Each `--box` is one object; all `--point`s together are one more object (label 1 foreground, the
default, or 0 background; `@N` puts a prompt on frame N, default 0); each `--mask PNG` adds the
objects of an indexed mask image (pixel value = object id, 0 background) or one object for a binary
mask. Objects are numbered in that order from 1 (a mask's own ids are kept).

Writes `track.json` with the run's settings first, `masks/<frame>.png` (object ids, DAVIS's
indexed encoding) as each frame is tracked, and at the end `overlay.mp4` and `track.json` again
with every mask as COCO RLE (`"complete": true`). Every
input is checked before the model loads; each file is written whole or not at all. A rerun into
the same folder with the same settings tracks again and rewrites the same files (SAM 2's memory
must be rebuilt from the first frame, so a run cannot continue mid-video); with other settings it
is refused.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from garasam.argtypes import device, output_dir, positive_float
from garasam.errors import ConfigError, DataError
from garasam.io import atomic_write_text
from garasam.models.registry import MODEL_TYPES, family_of
from garasam.outputs import claim_output

RECORD = "track.json"
SAM2_TYPES = sorted(t for t in MODEL_TYPES if family_of(t) == "sam2")


def _at_frame(text: str) -> tuple[str, int]:
    value, _, frame = text.partition("@")
    if not frame:
        return value, 0
    if not frame.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: the frame after @ must be a whole number >= 0")
    return value, int(frame)


def parse_box(text: str) -> tuple[tuple[float, float, float, float], int]:
    """'x0,y0,x1,y1[@frame]'."""
    from garasam.commands.predict import parse_box as box

    value, frame = _at_frame(text)
    return box(value), frame


def parse_point(text: str) -> tuple[tuple[float, float, int], int]:
    """'x,y[,label][@frame]'."""
    from garasam.commands.predict import parse_point as point

    value, frame = _at_frame(text)
    return point(value), frame


def parse_mask(text: str) -> tuple[Path, int]:
    """'PNG[@frame]'."""
    value, frame = _at_frame(text)
    return Path(value), frame


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "video", type=Path, metavar="VIDEO", help="a video file (mp4, webm, avi, ...) or a folder of frames"
    )
    parser.add_argument("--out", type=output_dir, required=True, help="output folder")
    parser.add_argument(
        "--checkpoint", type=Path, help="SAM 2.1 checkpoint (Meta's .pt or a Sam2VideoModel folder)"
    )
    parser.add_argument(
        "--model-type",
        choices=SAM2_TYPES,
        help="SAM 2.1 size (default: from the checkpoint's name, or the bundled sam2.1_tiny without one)",
    )
    parser.add_argument("--adapters", type=Path, help="adapter folder (image or video adapters)")
    parser.add_argument(
        "--random-weights", action="store_true", help="allow no --checkpoint (random weights: tests, timing)"
    )
    parser.add_argument("--device", type=device, default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="run the model in bfloat16 (autocast; SAM 2.1's fast path on GPUs, masks may differ slightly)",
    )
    prompts = parser.add_argument_group("prompts (at least one)")
    prompts.add_argument(
        "--box", type=parse_box, action="append", metavar="x0,y0,x1,y1[@frame]", help="an object's box"
    )
    prompts.add_argument(
        "--point",
        type=parse_point,
        action="append",
        metavar="x,y[,label][@frame]",
        help="a click; all clicks are one object",
    )
    prompts.add_argument(
        "--mask", type=parse_mask, action="append", metavar="PNG[@frame]", help="objects from a mask image"
    )
    parser.add_argument(
        "--fps", type=positive_float, default=10.0, help="frame rate of overlay.mp4 (default 10)"
    )


def run(args: argparse.Namespace) -> int:
    from garasam.video.frames import open_frames

    source = open_frames(args.video)
    objects = _objects(args, len(source), source.size)
    model_type = _model_type(args)
    settings = {**_settings(args, objects), "model_type": model_type}
    with claim_output(args.out, "track"):
        _check_rerun(args.out, settings)
        predictor = _predictor(args, model_type)
        return _track(args, predictor, source, objects, settings)


def _objects(args: argparse.Namespace, frames: int, size: tuple[int, int]) -> list[dict[str, Any]]:
    """Every prompt as {id, frame, kind, ...}, checked against the video before anything loads."""
    from garasam.video.clips import read_label_png

    objects: list[dict[str, Any]] = []
    for box, frame in args.box or []:
        objects.append({"id": len(objects) + 1, "frame": frame, "box": list(box)})
    if args.point:
        frames_of = {frame for _, frame in args.point}
        if len(frames_of) > 1:
            raise ConfigError(
                f"--point: the clicks of one object go on one frame, got frames {sorted(frames_of)}"
            )
        points = [[x, y] for (x, y, _), _ in args.point]
        labels = [label for (_, _, label), _ in args.point]
        if 1 not in labels:
            raise ConfigError("--point: give at least one foreground click (label 1)")
        objects.append({"id": len(objects) + 1, "frame": frames_of.pop(), "points": points, "labels": labels})
    for path, frame in args.mask or []:
        labels = read_label_png(path)
        if labels.shape != size:
            raise DataError(
                f"{path}: mask is {labels.shape[1]}x{labels.shape[0]}, the video {size[1]}x{size[0]}"
            )
        ids = [int(i) for i in np.unique(labels) if i not in (0, 255)]
        binary = not ids and bool((labels == 255).any())  # a black-and-white mask: one object
        ids = [1] if binary else ids
        if not ids:
            raise DataError(f"{path}: the mask is empty (no object pixel)")
        for obj_id in ids:
            taken = {o["id"] for o in objects}
            new_id = obj_id if obj_id not in taken else max(taken) + 1
            objects.append(
                {"id": new_id, "frame": frame, "mask": str(path), "value": 255 if binary else obj_id}
            )
    if not objects:
        raise ConfigError("give at least one prompt: --box, --point or --mask")
    for obj in objects:
        if obj["frame"] >= frames:
            raise ConfigError(
                f"object {obj['id']}: frame {obj['frame']} is past the end of {args.video} ({frames} frames)"
            )
    return objects


def _settings(args: argparse.Namespace, objects: list[dict[str, Any]]) -> dict[str, Any]:
    def name(path: Path | None) -> str | None:
        return None if path is None else str(Path(path).resolve())

    return {
        "video": name(args.video),
        "checkpoint": name(args.checkpoint),
        "model_type": args.model_type,
        "adapters": name(args.adapters),
        "bf16": args.bf16,
        "objects": objects,
    }


def _check_rerun(out: Path, settings: dict[str, Any]) -> None:
    record = out / RECORD
    if record.is_file():
        try:
            earlier = json.loads(record.read_text(encoding="utf-8")).get("settings")
        except (OSError, ValueError, AttributeError):
            earlier = None
        if earlier != settings:
            raise ConfigError(
                f"{out}: holds the tracks of another run (its {RECORD} differs): choose another --out"
            )
    elif (out / "masks").exists():
        raise ConfigError(
            f"{out}: has a masks/ folder but no {RECORD} (not a garasam track folder): choose another --out"
        )


def _model_type(args: argparse.Namespace) -> str:
    """--model-type; else the checkpoint's or the adapters' backbone; else the bundled sam2.1_tiny."""
    from garasam.adapters import read_adapter_config
    from garasam.assembly import resolve_model_type

    model_type = args.model_type
    if model_type is None and args.checkpoint is None:
        recorded = read_adapter_config(args.adapters)["backbone"].get("model_type") if args.adapters else None
        model_type = recorded if recorded in MODEL_TYPES else "sam2.1_tiny"
    model_type = resolve_model_type(args.adapters, args.checkpoint, model_type)
    if family_of(model_type) != "sam2":
        raise ConfigError(
            f"track needs SAM 2.1 (--model-type {' / '.join(SAM2_TYPES)}, or a sam2.1_*.pt --checkpoint), got {model_type}"
        )
    return model_type


def _predictor(args: argparse.Namespace, model_type: str) -> Any:
    import torch

    from garasam.assembly import ModelSpec, build_model
    from garasam.video.predictor import VideoPredictor

    spec = ModelSpec(model_type, args.checkpoint, args.adapters)
    model = build_model(spec, device=args.device, random_weights=args.random_weights, video=True)
    return VideoPredictor(model, dtype=torch.bfloat16 if args.bf16 else None)


def _track(
    args: argparse.Namespace, predictor: Any, source: Any, objects: list[dict[str, Any]], settings: dict
) -> int:
    from garasam.data.labels import label_map, write_label_png
    from garasam.predict.masks import encode_rle
    from garasam.predict.overlay import overlay
    from garasam.video.clips import read_label_png
    from garasam.video.writer import write_video

    # the settings first, so that an interrupted run is recognised as this one when rerun
    atomic_write_text(args.out / RECORD, json.dumps({"settings": settings, "complete": False}) + "\n")
    state = predictor.init_state(source)
    for obj in sorted(objects, key=lambda o: o["frame"]):
        if "box" in obj:
            predictor.add_new_points_or_box(state, obj["frame"], obj["id"], box=obj["box"])
        elif "points" in obj:
            predictor.add_new_points_or_box(
                state, obj["frame"], obj["id"], points=obj["points"], labels=obj["labels"]
            )
        else:
            predictor.add_new_mask(
                state, obj["frame"], obj["id"], read_label_png(Path(obj["mask"])) == obj["value"]
            )
    start = min(obj["frame"] for obj in objects)
    results: list[dict[str, Any]] = []
    masks_dir = args.out / "masks"
    begun = time.perf_counter()
    bar = tqdm(total=len(source) - start, desc="track", unit="frame")
    for frame_idx, ids, logits in predictor.propagate_in_video(state):
        masks = {obj_id: (logits[i, 0] > 0).cpu().numpy() for i, obj_id in enumerate(ids)}
        write_label_png(masks_dir / f"{frame_idx:05d}.png", label_map(masks, source.size))
        for obj_id, mask in masks.items():
            results.append(
                {
                    "frame": frame_idx,
                    "object": obj_id,
                    "segmentation": encode_rle(mask),
                    "area": int(mask.sum()),
                }
            )
        bar.update(1)
        bar.set_postfix_str(f"{bar.n / (time.perf_counter() - begun):.1f} frames/s")
    bar.close()
    tracked = sorted({r["frame"] for r in results})

    def overlays():
        for frame_idx in tracked:
            labels = read_label_png(masks_dir / f"{frame_idx:05d}.png")
            yield overlay(source.frame(frame_idx), [labels == obj["id"] for obj in objects])

    write_video(args.out / "overlay.mp4", overlays(), fps=args.fps)
    record = {
        "settings": settings,
        "complete": True,
        "frames": len(source),
        "tracked_frames": [tracked[0], tracked[-1]],
        "masks": results,
    }
    atomic_write_text(args.out / RECORD, json.dumps(record) + "\n")
    print(f"tracked {len(objects)} object(s) over {len(tracked)} frames -> {args.out}")
    return 0
