"""Throughput of the robustseg degradations (ours, torch) next to albumentations 2.0.8 on the CPU.

    python benchmarks/degradations.py --device cpu --size 1024 --repeats 2 --out results.md

Ours runs on a uint8 batch on `--device`; the reference runs image by image on NumPy HWC uint8 on the
CPU, as a data loader would. The reference column names the closest albumentations 2.x transform;
RobustSAM used 1.x arguments and imgaug, so strengths are close, not identical (docs/degradations.md).
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from garasam.data.degradations import Degradation, get_suite
from garasam.io import atomic_write_text

Reference = Callable[[np.ndarray], np.ndarray]


def _references() -> dict[str, tuple[str, Reference]]:
    """Per degradation name: (description, albumentations transform applied to one HWC uint8 image)."""
    import albumentations as A
    import cv2

    transforms = {
        "snow": (
            "RandomSnow(texture, 0.3-0.7)",
            A.RandomSnow(snow_point_range=(0.3, 0.7), method="texture", p=1.0),
        ),
        "fog": (
            "RandomFog(0.1-0.2, alpha 0.08)",
            A.RandomFog(fog_coef_range=(0.1, 0.2), alpha_coef=0.08, p=1.0),
        ),
        "rain": ("RandomRain(slant +-15)", A.RandomRain(slant_range=(-15, 15), p=1.0)),
        "gauss_noise": (
            "GaussNoise(var 250-260)",
            A.GaussNoise(std_range=(250**0.5 / 255, 260**0.5 / 255), per_channel=True, p=1.0),
        ),
        "ISO_noise": (
            "ISONoise(0.4-0.5, 0.7-0.8)",
            A.ISONoise(color_shift=(0.4, 0.5), intensity=(0.7, 0.8), p=1.0),
        ),
        "impulse_noise": (
            "MultiplicativeNoise(1.4-1.5, elementwise)",
            A.MultiplicativeNoise(multiplier=(1.4, 1.5), per_channel=False, elementwise=True, p=1.0),
        ),
        "resampling_blur": (
            "Downscale(0.25, area/linear)",
            A.Downscale(
                scale_range=(0.25, 0.25),
                interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR},
                p=1.0,
            ),
        ),
        "motion_blur": (
            "MotionBlur(3-35, centred)",
            A.MotionBlur(blur_limit=(3, 35), allow_shifted=False, p=1.0),
        ),
        "zoom_blur": (
            "ZoomBlur(1.33, step 0.05-0.07)",
            A.ZoomBlur(max_factor=(1.33, 1.33), step_factor=(0.05, 0.07), p=1.0),
        ),
        "color_jitter": (
            "ColorJitter(0.7, 0.3, 0.7, 0.5)",
            A.ColorJitter(brightness=0.7, contrast=0.3, saturation=0.7, hue=0.5, p=1.0),
        ),
        "compression": ("ImageCompression(5-10)", A.ImageCompression(quality_range=(5, 10), p=1.0)),
        "elastic_transform": ("ElasticTransform(100, 10)", A.ElasticTransform(alpha=100, sigma=10, p=1.0)),
        "frosted_glass_blur": (
            "GlassBlur(0.7, delta 3, 1 it.)",
            A.GlassBlur(sigma=0.7, max_delta=3, iterations=1, p=1.0),
        ),
        "brightness": ("MultiplicativeNoise(0.6-0.8)", A.MultiplicativeNoise(multiplier=(0.6, 0.8), p=1.0)),
        "contrast": (
            "RandomBrightnessContrast(c 0.6-0.7)",
            A.RandomBrightnessContrast(brightness_limit=(0, 0), contrast_limit=(0.6, 0.7), p=1.0),
        ),
    }
    return {name: (text, _as_reference(transform)) for name, (text, transform) in transforms.items()}


def _as_reference(transform: Callable[..., dict]) -> Reference:
    return lambda image: transform(image=image)["image"]


def _images(batch: int, size: int) -> torch.Tensor:
    """A reproducible batch of textured uint8 images (content matters little, except to JPEG)."""
    gen = torch.Generator().manual_seed(0)
    coords = torch.linspace(0, 1, size)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    images = []
    for i in range(batch):
        base = torch.stack(
            [
                128 + 80 * torch.sin((9 + i) * xx + 4 * yy),
                128 + 70 * torch.cos(13 * yy - (3 + i) * xx),
                128 + 60 * torch.sin(21 * xx * yy),
            ]
        )
        images.append((base + 12 * torch.randn(3, size, size, generator=gen)).clamp(0, 255))
    return torch.stack(images).round().to(torch.uint8)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _ours_per_second(d: Degradation, images: torch.Tensor, repeats: int) -> float:
    seeds = list(range(images.shape[0]))
    d(images, seeds)  # warm-up: lazy imports, FFT plans, CUDA kernels
    _sync(images.device)
    start = time.perf_counter()
    for _ in range(repeats):
        d(images, seeds)
    _sync(images.device)
    return repeats * images.shape[0] / (time.perf_counter() - start)


def _reference_per_second(reference: Reference, images: list[np.ndarray], repeats: int) -> float:
    reference(images[0])  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        for image in images:
            reference(image)
    return repeats * len(images) / (time.perf_counter() - start)


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _machine(device: torch.device) -> str:
    import albumentations
    import cv2
    import kornia

    parts = [
        f"CPU {_cpu_model()}",
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)",
        f"kornia {kornia.__version__}",
        f"albumentations {albumentations.__version__} (OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads)",
    ]
    if device.type == "cuda":
        parts.insert(1, f"GPU {torch.cuda.get_device_name(device)}")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--size", type=int, default=1024, help="square image side in pixels")
    parser.add_argument("--batch", type=int, default=4, help="images per call of ours")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed calls per degradation, after one warm-up"
    )
    parser.add_argument("--only", nargs="*", default=None, help="degradation names to run (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args(argv)

    names = [d.name for d in get_suite("robustseg")]
    unknown = sorted(set(args.only or []) - set(names))
    if unknown:
        parser.error(f"unknown degradation(s) {', '.join(unknown)}; valid: {', '.join(names)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    device = torch.device(args.device)
    images = _images(args.batch, args.size)
    numpy_images = [np.ascontiguousarray(image.permute(1, 2, 0).numpy()) for image in images]
    images = images.to(device)
    references = _references()

    lines = [
        f"Robustseg degradations, {args.size}x{args.size}, ours on {device.type} (batch {args.batch}), "
        f"reference on CPU (image by image), {args.repeats} timed repeats",
        "",
        f"Machine: {_machine(device)}",
        "",
        "| degradation | ours img/s | reference (albumentations) | reference img/s | ours / reference |",
        "|---|---:|---|---:|---:|",
    ]
    print("\n".join(lines), flush=True)
    for d in get_suite("robustseg"):
        if args.only and d.name not in args.only:
            continue
        text, reference = references[d.name]
        ours = _ours_per_second(d, images, args.repeats)
        theirs = _reference_per_second(reference, numpy_images, args.repeats)
        row = f"| {d.name} | {ours:.2f} | {text} | {theirs:.2f} | {ours / theirs:.2f} |"
        lines.append(row)
        print(row, flush=True)
    if args.out is not None:
        atomic_write_text(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
