"""SAM 2.1 image-encoder speed: Meta's `sam2` code against ours (transformers' Sam2Model), frozen and
with adapters. The SAM 1 rows are `benchmarks/encoder.py`; SAM 2.1 has its own script because none of
SAM 1's fast-path configurations (fused kernels, our attention, compilation per block) apply to it.

On one device, one random input per batch size, random weights (SAM 2.1's 1024 px, or 256 px for
`sam2.1_mini`), everything up to the decoder's input (the three feature maps, the no-memory
embedding added):

- official fp32 (the reference) and official under bf16 autocast: `SAM2Base.forward_image` and
  `_prepare_backbone_features`, as `SAM2ImagePredictor.set_image` runs them;
- ours under bf16 autocast: frozen; with GaRA (defaults, non-zero B); with LoRA-16.

Each row: ms/image, images/s, peak memory, and the relative error of the coarsest map against
ours in fp32 with the same weights (loaded from the official model, so the error also checks the
conversion). The report is rewritten after every row; a configuration that fails is reported so.

    python benchmarks/sam2_encoder.py --device cuda --models sam2.1_hiera_t,sam2.1_hiera_b+ --batch 1,8
    python benchmarks/sam2_encoder.py --device cpu --models sam2.1_mini --batch 1 --repeats 2
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import traceback
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and an uninstalled `garasam` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.common import Report, environment, free_device_memory, time_fn  # noqa: E402
from garasam.adapters import GaRAConfig, LoRAConfig, adapter_layers, inject_adapters  # noqa: E402
from garasam.models import build_sam  # noqa: E402
from garasam.models.features import encode_images  # noqa: E402
from garasam.models.sam2 import SAM2_TYPES  # noqa: E402

CONFIGS = {
    "official_fp32": "official sam2, fp32 (reference)",
    "official_bf16": "official sam2, bf16 autocast",
    "frozen": "ours (transformers Sam2Model), bf16 autocast",
    "gara": "ours + GaRA, bf16 autocast",
    "lora16": "ours + LoRA-16, bf16 autocast",
}
COLUMNS = ["model", "config", "batch", "ms/img", "img/s", "peak GiB", "rel err", "repeats", "status"]
SECTION = "SAM 2.1 image encoder (to the decoder's input)"


def build_official(model_type: str, device: torch.device) -> nn.Module:
    """Meta's SAM 2.1 with random weights: the released sizes from the package's configs, the mini
    size from the test helper's modules (tests/official_sam2.py)."""
    from tests.official_sam2 import official_mini_sam2, official_sam2

    if model_type == "sam2.1_mini":
        return official_mini_sam2().to(device).eval()
    size = model_type.removeprefix("sam2.1_hiera_")
    return official_sam2(size).to(device).eval()


def official_coarse_map(model: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """The official image path up to the decoder's input, as `SAM2ImagePredictor.set_image` runs it;
    returns the coarsest map [B, C, h, w] (the finer two are computed all the same)."""
    backbone = model.forward_image(pixels)
    _, maps, _, sizes = model._prepare_backbone_features(backbone)
    coarse = maps[-1] + model.no_mem_embed
    return coarse.permute(1, 2, 0).reshape(pixels.shape[0], -1, *sizes[-1])


def build_ours(
    official: nn.Module, model_type: str, device: torch.device, adapter: object | None
) -> nn.Module:
    """Our model holding the official weights, read through Meta's `.pt` layout as a real checkpoint is."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{model_type}.pt"
        torch.save({"model": {k: v.cpu() for k, v in official.state_dict().items()}}, path)
        model = build_sam(model_type, path, device=device)
    if adapter is not None:
        inject_adapters(model, adapter)
        with torch.no_grad():
            for layer in adapter_layers(model).values():
                layer.lora_B.normal_(0, 0.02)
    return model.eval().requires_grad_(False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default="sam2.1_hiera_t,sam2.1_hiera_b+")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--max-seconds", type=float, default=8.0, help="per configuration")
    parser.add_argument("--out", type=Path, default=Path("sam2_encoder.md"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [m for m in models if m not in SAM2_TYPES] + [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown model types or configs: {unknown}")
    batches = [int(b) for b in args.batch.split(",")]
    report = Report(args.out, "SAM 2.1 image-encoder benchmark", args.out.with_suffix(".json"))
    env = environment(device)
    report.add_preamble(", ".join(f"{k}: {v}" for k, v in env.items()))
    report.section(SECTION, COLUMNS)

    for model_type in models:
        torch.manual_seed(0)
        official = build_official(model_type, device)
        side = SAM2_TYPES[model_type].image_size
        reference = build_ours(official, model_type, device, None)
        adapters = {"frozen": None, "gara": GaRAConfig(), "lora16": LoRAConfig(rank=16)}
        for batch in batches:
            pixels = torch.randn(batch, 3, side, side, device=device)
            with torch.no_grad():
                expected = encode_images(reference, pixels).embeddings.float()
            for config in configs:
                row = {"model": model_type, "config": config, "batch": batch}
                try:
                    model = (
                        official
                        if config.startswith("official")
                        else build_ours(official, model_type, device, adapters[config])
                    )
                    run = partial(
                        _forward, model, pixels, config.startswith("official"), config != "official_fp32"
                    )
                    with torch.no_grad():
                        out = run()
                        timing = time_fn(
                            run,
                            device,
                            warmup=args.warmup,
                            repeats=args.repeats,
                            max_seconds=args.max_seconds,
                        )
                    peak = timing.peak_memory_bytes
                    row.update(
                        {
                            "ms/img": timing.median_ms / batch,
                            "img/s": 1e3 * batch / timing.median_ms,
                            "peak GiB": None if peak is None else peak / 2**30,
                            "rel err": ((out.float() - expected).norm() / expected.norm()).item(),
                            "repeats": timing.repeats,
                            "status": "ok",
                        }
                    )
                except Exception as err:  # noqa: BLE001 - a failed configuration is a result, the run goes on
                    row["status"] = f"failed: {type(err).__name__}: {str(err).splitlines()[0][:120]}"
                    traceback.print_exc()
                report.add_row(SECTION, row)
                free_device_memory(device)
    report.note("rel err: the coarsest feature map against ours in fp32 with the same (official) weights.")
    report.note(f"configs: {'; '.join(f'{k} = {v}' for k, v in CONFIGS.items())}")
    print(args.out.read_text())
    return 0


def _forward(model: nn.Module, pixels: torch.Tensor, official: bool, bf16: bool) -> torch.Tensor:
    """The coarsest map of one encoder call, official or ours, optionally under bf16 autocast."""
    amp = torch.autocast(pixels.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with amp:
        return official_coarse_map(model, pixels) if official else encode_images(model, pixels).embeddings


if __name__ == "__main__":
    sys.exit(main())
