"""Batch-1 CPU latency of exported GaRA-SAM: ONNX Runtime fp32 / fp16 / int8 against PyTorch eager.

    python benchmarks/export.py --models tiny,vit_b --repeats 10 --out benchmarks/results/export-cpu

For each model type (random weights for vit_b: timing only) with GaRA adapters (r_low 16, r_high 256,
default gates), in one run on one machine: the encoder (one image) and the decoder (one box) in
PyTorch eager and in ONNX Runtime at each precision, the ratio to PyTorch eager, and the files'
sizes. Inputs are the same for all; ONNX Runtime uses its default threads, torch its own.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import Report, environment, time_fn  # noqa: E402

PRECISIONS = ("fp32", "fp16", "int8")
COLUMNS = ["model", "part", "runtime", "median ms", "vs eager", "size MiB"]


def gara_model(model_type: str) -> torch.nn.Module:
    from garasam.adapters import GaRAConfig, inject_adapters
    from garasam.assembly import ModelSpec, build_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(
            ModelSpec(model_type), device="cpu", fast=False, random_weights=model_type != "tiny"
        )
    return inject_adapters(model, GaRAConfig()).eval()


def measure(model_type: str, repeats: int, report: Report) -> None:
    import copy

    import onnxruntime

    from garasam.deploy.export import DecoderGraph, export_onnx

    model = gara_model(model_type)
    side = int(model.config.vision_config.image_size)
    pixels = torch.randn(1, 3, side, side)
    with torch.inference_mode():
        embeddings = model.get_image_embeddings(pixels)
    eager_decoder = DecoderGraph(copy.deepcopy(model)).eval()
    low = 4 * embeddings.shape[-1]
    prompt = (embeddings, torch.tensor([[[10.0, 10.0], [200.0, 180.0]]]), torch.tensor([[2.0, 3.0]]))
    prompt += (torch.zeros(1, 1, low, low), torch.zeros(1))

    def eager_encoder() -> object:
        with torch.inference_mode():
            return model.get_image_embeddings(pixels)

    def eager_decode() -> object:
        with torch.inference_mode():
            return eager_decoder(*prompt)

    eager = {
        "encoder": time_fn(eager_encoder, torch.device("cpu"), warmup=2, repeats=repeats).median_ms,
        "decoder": time_fn(eager_decode, torch.device("cpu"), warmup=2, repeats=repeats).median_ms,
    }
    for part, ms in eager.items():
        report.add_row(
            "latency",
            {
                "model": model_type,
                "part": part,
                "runtime": "PyTorch eager fp32",
                "median ms": round(ms, 1),
                "vs eager": 1.0,
            },
        )
    feeds_decoder = {
        "image_embeddings": embeddings.numpy(),
        "point_coords": prompt[1].numpy(),
        "point_labels": prompt[2].numpy(),
        "mask_input": prompt[3].numpy(),
        "has_mask_input": prompt[4].numpy(),
    }
    with tempfile.TemporaryDirectory() as temp:
        for precision in PRECISIONS:
            folder = export_onnx(gara_model(model_type), Path(temp) / precision, precision=precision)
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            for part in ("encoder", "decoder"):
                session = onnxruntime.InferenceSession(
                    str(folder / f"{part}.onnx"), options, providers=["CPUExecutionProvider"]
                )
                names = {node.name for node in session.get_inputs()}
                feeds = feeds_decoder if part == "decoder" else {"pixel_values": pixels.numpy()}
                if "valid_tokens" in names:
                    feeds = {**feeds, "valid_tokens": np.ones((1, *embeddings.shape[-2:]), dtype=bool)}
                ms = time_fn(
                    lambda s=session, f=feeds: s.run(None, f), torch.device("cpu"), warmup=2, repeats=repeats
                ).median_ms
                size = (folder / f"{part}.onnx").stat().st_size / 2**20
                report.add_row(
                    "latency",
                    {
                        "model": model_type,
                        "part": part,
                        "runtime": f"ONNX Runtime {precision}",
                        "median ms": round(ms, 1),
                        "vs eager": round(eager[part] / ms, 2),
                        "size MiB": round(size, 1),
                    },
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", default="tiny,vit_b", help="comma-separated model types")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/export-cpu"))
    args = parser.parse_args(argv)
    import onnxruntime

    args.out.mkdir(parents=True, exist_ok=True)
    report = Report(args.out / "export.md", "Exported GaRA-SAM on the CPU, batch 1", args.out / "export.json")
    info = environment(torch.device("cpu")) | {"onnxruntime": onnxruntime.__version__}
    report.add_preamble(", ".join(f"{k} {v}" for k, v in info.items()))
    report.add_preamble('"vs eager": PyTorch eager time / this time (above 1: faster than eager).')
    report.section("latency", COLUMNS)
    for model_type in args.models.split(","):
        measure(model_type.strip(), args.repeats, report)
    print(args.out.joinpath("export.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
