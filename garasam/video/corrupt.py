"""`garasam corrupt --video`: degraded copies of video clips, each coherent in time
(`garasam.data.degradations.temporal.degrade_clip`), in the frames + masks layout that
`garasam.video.clips.read_frames_folder` reads back.

Output: `<out>/<folder>/<sequence>/frames/<frame>.png` and `masks/<frame>.png` (object ids, only the
annotated frames; warped with the pixels for geometric degradations), where `<folder>` is `clean` or
the degradation's folder name (`fog`, `fog_s3` for imagenet-c). A sequence is complete when its
`.done` file exists (written last); a rerun skips complete sequences, so an interrupted run resumes,
losing at most the sequence it was writing.
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from garasam.data.degradations import CLEAN, get_degradation, seed_for
from garasam.data.degradations.temporal import degrade_clip, intensity_curve
from garasam.data.labels import label_map, write_label_png
from garasam.errors import DataError
from garasam.io import atomic_write_bytes, atomic_write_text
from garasam.outputs import pin_settings
from garasam.video.clips import Clip

MANIFEST = "video_manifest.json"
DONE = ".done"


@dataclass
class VideoCorruptReport:
    """What a run wrote and skipped."""

    written: list[str] = field(default_factory=list)  # <folder>/<sequence>
    skipped: list[str] = field(default_factory=list)


def corrupt_clips(
    clips: list[Clip],
    out: Path,
    outputs: list[tuple[str, int, str]],
    suite: str,
    seed: int,
    intensity_low: float | None,
    data: str,
) -> VideoCorruptReport:
    """Write `clean` and every (degradation, severity, folder) of `outputs` for every clip."""
    pin_settings(
        out,
        MANIFEST,
        {"suite": suite, "seed": seed, "intensity_low": intensity_low, "data": data},
        keys=("suite", "seed", "intensity_low"),
    )
    report = VideoCorruptReport()
    plan = [("clean", CLEAN.default_severity, "clean"), *outputs]
    with tqdm(total=len(plan) * len(clips), desc="corrupt --video", unit="clip") as bar:
        for name, severity, folder in plan:
            degradation = CLEAN if name == "clean" else get_degradation(suite, name)
            for clip in clips:
                target = out / folder / clip.name
                if (target / DONE).is_file():
                    report.skipped.append(f"{folder}/{clip.name}")
                else:
                    _write_clip(clip, target, degradation, severity, seed, intensity_low)
                    report.written.append(f"{folder}/{clip.name}")
                bar.update(1)
    return report


def _write_clip(
    clip: Clip, target: Path, degradation, severity: int, seed: int, intensity_low: float | None
) -> None:
    if target.exists():  # an interrupted sequence: written again whole
        shutil.rmtree(target)
    frames = [clip.frame(i) for i in range(len(clip))]
    shape = frames[0].shape[:2]
    for index, frame in enumerate(frames):
        if frame.shape[:2] != shape:
            raise DataError(
                f"{clip.frames[index]}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, frame 0 {shape[1]}x{shape[0]}"
            )
    per_frame = [clip.masks(i) if i in clip.annotations else None for i in range(len(clip))]
    ids = [sorted(m) if m is not None else None for m in per_frame]
    stacks = [
        None if m is None else (np.stack([m[i] for i in sorted(m)]) if m else np.zeros((0, *shape), bool))
        for m in per_frame
    ]
    clip_seed = seed_for(clip.name, degradation.name, severity, seed)
    curve = None
    if intensity_low is not None and degradation.name != "clean" and not degradation.geometric:
        curve = intensity_curve(len(frames), clip_seed, low=intensity_low)
    warp = degradation.geometric
    degraded, warped = degrade_clip(
        degradation, frames, clip_seed, severity, masks=stacks if warp else None, intensity=curve
    )
    masks_out = warped if warp else stacks
    for index, (path, image) in enumerate(zip(clip.frames, degraded, strict=True)):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        atomic_write_bytes(target / "frames" / f"{path.stem}.png", buffer.getvalue())
        if masks_out[index] is not None:
            objects = dict(zip(ids[index], masks_out[index], strict=True))
            write_label_png(target / "masks" / f"{path.stem}.png", label_map(objects, shape))
    record = {
        "frames": len(frames),
        "seed": clip_seed,
        "intensity": None if curve is None else curve.round(4).tolist(),
    }
    atomic_write_text(target / DONE, json.dumps(record) + "\n")
