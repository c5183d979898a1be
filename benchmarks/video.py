"""Video tracking speed: Meta's `SAM2VideoPredictor` against ours (`garasam.VideoPredictor` on
transformers' Sam2VideoModel), frozen and with GaRA in the encoder or in encoder + memory attention.

On one device, random weights (the released sizes from the official configs, `sam2.1_mini` from the
test helper's modules), one object prompted with a click on frame 0 of a random clip, then
`propagate_in_video` over every frame; frames/s is the clip's length over the propagation's wall
time (median of repeats; the first propagation is a warm-up). The official predictor reads the
same frames as JPEG files, ours as arrays; both in fp32 (bf16 rows only on CUDA: `--bf16`). Each row
also reports the largest difference of our frozen masks' logits from the official ones relative to
the peak logit (the conversion and the tracking logic checked on the way).

    python benchmarks/video.py --device cpu --models sam2.1_mini --frames 8
    python benchmarks/video.py --device cuda --models sam2.1_hiera_t,sam2.1_hiera_b+ --frames 32 --bf16
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and an uninstalled `garasam` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.common import Report, environment, free_device_memory  # noqa: E402
from garasam.adapters import GaRAConfig, adapter_layers, inject_adapters  # noqa: E402
from garasam.adapters.config import VIDEO_PRESETS  # noqa: E402
from garasam.models import build_sam  # noqa: E402
from garasam.models.sam2 import SAM2_TYPES  # noqa: E402
from garasam.video.predictor import VideoPredictor  # noqa: E402

CONFIGS = {
    "official": "official sam2 SAM2VideoPredictor (reference)",
    "frozen": "ours, frozen",
    "gara_encoder": "ours + GaRA in the image encoder",
    "gara_encoder_memory": "ours + GaRA in the encoder and the memory attention",
}
COLUMNS = [
    "model",
    "config",
    "precision",
    "frames",
    "frames/s",
    "ms/frame",
    "ratio to official",
    "max diff",
    "status",
]
SECTION = "Tracking one object (propagate_in_video)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default="sam2.1_mini")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", default="240,320", help="frame height,width")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="also time bf16 autocast (CUDA)")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--out", type=Path, default=Path("video.md"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [m for m in models if m not in SAM2_TYPES] + [c for c in configs if c not in CONFIGS]
    if unknown or "official" not in configs:
        parser.error(f"unknown model types or configs: {unknown} (the official row is the baseline: keep it)")
    height, width = (int(v) for v in args.size.split(","))
    report = Report(args.out, "SAM 2.1 video tracking benchmark", args.out.with_suffix(".json"))
    report.add_preamble(", ".join(f"{k}: {v}" for k, v in environment(device).items()))
    report.section(SECTION, COLUMNS)
    precisions = ["fp32", "bf16"] if args.bf16 else ["fp32"]
    with tempfile.TemporaryDirectory() as folder:
        frames_dir = Path(folder) / "frames"
        frames_dir.mkdir()
        rng = np.random.default_rng(0)
        for t in range(args.frames):
            Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
                frames_dir / f"{t:05d}.jpg"
            )
        frames = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(frames_dir.iterdir())]
        for model_type in models:
            torch.manual_seed(0)
            official = _official(model_type, device)
            checkpoint = Path(folder) / f"{model_type}.pt"
            torch.save({"model": {k: v.cpu() for k, v in official.state_dict().items()}}, checkpoint)
            for precision in precisions:
                baseline, reference = None, None
                for config in configs:
                    row = {
                        "model": model_type,
                        "config": config,
                        "precision": precision,
                        "frames": args.frames,
                    }
                    try:
                        if config == "official":
                            run = partial(_official_track, official, frames_dir, width, height)
                        else:
                            predictor = VideoPredictor(_ours(checkpoint, config, device))
                            run = partial(_our_track, predictor, frames, width, height)
                        seconds, logits = _time(run, precision, device, args.repeats)
                        baseline = seconds if config == "official" else baseline
                        if config == "official":
                            reference = logits
                        diff = None
                        if config == "frozen" and reference is not None:
                            diff = float((logits - reference).abs().max() / reference.abs().max())
                        row.update(
                            {
                                "frames/s": args.frames / seconds,
                                "ms/frame": 1e3 * seconds / args.frames,
                                "ratio to official": None if baseline is None else baseline / seconds,
                                "max diff": diff,
                                "status": "ok",
                            }
                        )
                    except Exception as err:  # noqa: BLE001 - a failed configuration is a result
                        row["status"] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:120]}"
                        traceback.print_exc()
                    report.add_row(SECTION, row)
                    free_device_memory(device)
    report.note(
        "frames/s: clip length over the propagation's wall time (median of repeats, after a warm-up)."
    )
    report.note("ratio to official: the official predictor's time over this row's (above 1: faster).")
    report.note(
        "max diff: our frozen logits against the official ones, relative to the peak logit (fp32 rows)."
    )
    report.note(f"configs: {'; '.join(f'{k} = {v}' for k, v in CONFIGS.items())}")
    print(args.out.read_text())
    return 0


def _official(model_type: str, device: torch.device) -> torch.nn.Module:
    """Meta's SAM2VideoPredictor with random weights (tests/official_sam2.py builds it)."""
    from tests.official_sam2 import official_mini_sam2, official_sam2

    if model_type == "sam2.1_mini":
        return official_mini_sam2(video=True).to(device).eval()
    return official_sam2(model_type.removeprefix("sam2.1_hiera_"), video=True).to(device).eval()


def _ours(checkpoint: Path, config: str, device: torch.device) -> torch.nn.Module:
    model = build_sam(checkpoint.stem, checkpoint, device=device, video=True)
    preset = {"gara_encoder": "encoder", "gara_encoder_memory": "encoder+memory"}.get(config)
    if preset is not None:
        inject_adapters(model, GaRAConfig(target_modules=VIDEO_PRESETS[preset]))
        with torch.no_grad():
            for layer in adapter_layers(model).values():
                layer.lora_B.normal_(0, 0.02)  # non-zero, as trained adapters are
    return model.eval().requires_grad_(False)


def _official_track(model: torch.nn.Module, frames_dir: Path, width: int, height: int) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = model.init_state(str(frames_dir))
        model.add_new_points_or_box(state, 0, 1, points=[[width / 2, height / 2]], labels=[1])
        return torch.stack([masks[0, 0].float().cpu() for _, _, masks in model.propagate_in_video(state)])


def _our_track(predictor: VideoPredictor, frames: list[np.ndarray], width: int, height: int) -> torch.Tensor:
    state = predictor.init_state(frames)
    predictor.add_new_points_or_box(state, 0, 1, points=[[width / 2, height / 2]], labels=[1])
    return torch.stack([masks[0, 0].float().cpu() for _, _, masks in predictor.propagate_in_video(state)])


def _time(run, precision: str, device: torch.device, repeats: int) -> tuple[float, torch.Tensor]:
    amp = (
        torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    )
    times = []
    with torch.inference_mode(), amp:
        logits = run()  # warm-up
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            run()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
    return statistics.median(times), logits


if __name__ == "__main__":
    sys.exit(main())
