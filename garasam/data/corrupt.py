"""`garasam corrupt`: write a degraded copy of any dataset in the Robust-Seg layout.

Output: `clear/<id>.jpg`, `masks/<id>.npy`, one `<folder>/<id>.jpg` per degradation (and severity, for
imagenet-c), plus `masks_<folder>/<id>.npy` for geometric degradations whose masks move with the image.
Each degraded image is reproducible on its own (its seed comes from the image id, the degradation and
the base seed), so the work is split over processes and an interrupted run is resumed by running the
same command again: finished files are kept, every file is written atomically.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from garasam.data.images import save_jpeg, save_masks
from garasam.data.readers import CLEAN_DIR, MASKS_DIR, Reader, masks_dir_for
from garasam.errors import ConfigError, DataError

MANIFEST = "corrupt.json"


@dataclass(frozen=True)
class Output:
    """One degraded version of every image: a degradation at one severity, written to `folder`."""

    degradation: str
    severity: int
    folder: str
    geometric: bool


@dataclass(frozen=True)
class Job:
    """What a worker needs besides the image index; sent once per worker process."""

    reader: Reader
    out: Path
    suite: str
    outputs: tuple[Output, ...]
    seed: int
    strict: bool


@dataclass
class Result:
    written: int = 0
    existing: int = 0
    problems: list[str] = field(default_factory=list)


def expected_files(out: Path, image_id: str, outputs: tuple[Output, ...]) -> list[Path]:
    """Every file `corrupt` writes for one image."""
    files = [out / CLEAN_DIR / f"{image_id}.jpg", out / MASKS_DIR / f"{image_id}.npy"]
    for output in outputs:
        files.append(out / output.folder / f"{image_id}.jpg")
        if output.geometric:
            files.append(out / masks_dir_for(output.folder) / f"{image_id}.npy")
    return files


def process_image(job: Job, index: int) -> Result:
    """Write every missing output of image `index`; masks before images, so a present image means done."""
    from garasam.data.degradations import get_degradation, seed_for

    result = Result()
    try:
        sample = job.reader[index]
    except DataError as err:
        if job.strict:
            raise
        result.problems.append(str(err))
        return result
    image_id = sample.meta["image_id"]
    masks = np.stack(sample.masks)
    clean_mask_path = job.out / MASKS_DIR / f"{image_id}.npy"
    _write_missing(result, clean_mask_path, save_masks, masks)
    _write_missing(result, job.out / CLEAN_DIR / f"{image_id}.jpg", save_jpeg, sample.image)
    for output in job.outputs:
        image_path = job.out / output.folder / f"{image_id}.jpg"
        mask_path = job.out / masks_dir_for(output.folder) / f"{image_id}.npy" if output.geometric else None
        if image_path.is_file() and (mask_path is None or mask_path.is_file()):
            result.existing += 1 + (mask_path is not None)
            continue
        degradation = get_degradation(job.suite, output.degradation)
        seed = seed_for(image_id, output.degradation, output.severity, job.seed)
        try:
            degraded, warped = degradation.apply_image(
                sample.image, seed, output.severity, masks if mask_path is not None else None
            )
        except DataError as err:
            if job.strict:
                raise
            result.problems.append(f"{sample.meta['source']}: {output.folder}: {err}")
            continue
        if mask_path is not None:
            _write_missing(result, mask_path, save_masks, warped)
        _write_missing(result, image_path, save_jpeg, degraded)
    return result


def _write_missing(
    result: Result, path: Path, write: Callable[[Path, np.ndarray], None], data: np.ndarray
) -> None:
    """Write `data` to `path` unless a finished copy exists (a resumed run never rewrites a file)."""
    if path.is_file():
        result.existing += 1
    else:
        write(path, data)
        result.written += 1


_JOB: Job | None = None


def init_worker(job: Job) -> None:
    global _JOB
    _JOB = job
    torch.set_num_threads(1)  # parallelism comes from the processes


def work_on(index: int) -> Result:
    assert _JOB is not None, "worker used before init_worker"
    return process_image(_JOB, index)


def plan_outputs(
    suite: str, severities: Sequence[int] | None, only: Sequence[str] | None
) -> tuple[Output, ...]:
    """The folders to write: every (degradation, severity) of the suite, or the ones asked for."""
    from garasam.data.degradations import SUITES, folder_name, get_suite

    if suite not in SUITES:
        raise ConfigError(f"unknown suite {suite!r}; suites: {', '.join(SUITES)}")
    degradations = list(get_suite(suite))
    if only:
        wanted = list(only)
        names = [d.name for d in degradations]
        unknown = [name for name in wanted if name not in names]
        if unknown:
            raise ConfigError(
                f"--only: unknown degradation(s) {unknown} in suite {suite}; names: {', '.join(names)}"
            )
        degradations = [d for d in degradations if d.name in wanted]
    requested = sorted(set(severities)) if severities else None
    outputs = []
    for degradation in degradations:
        levels = degradation.severities if requested is None else requested
        bad = [level for level in levels if level not in degradation.severities]
        if bad:
            raise ConfigError(
                f"--severities {bad} not available for {suite}/{degradation.name} "
                f"(severities: {list(degradation.severities)})"
            )
        outputs.extend(
            Output(degradation.name, level, folder_name(degradation, level), degradation.geometric)
            for level in levels
        )
    return tuple(outputs)
