"""`garasam export`: SAM with its adapters as files that run without PyTorch.

    garasam export --format onnx --out exported/tiny_gara --adapters garasam/assets/tiny_gara
    garasam export --format onnx --model-type vit_b --checkpoint sam_vit_b_01ec64.pth \\
        --adapters runs/gara/adapters --out exported/gara_vit_b

Writes encoder.onnx, decoder.onnx and model.json (docs/deploy.md); `garasam.deploy.OnnxPredictor`
runs them with onnxruntime, numpy and Pillow only. `--format pt2|aoti|pte` writes the same graphs as
torch.export programs, AOTInductor packages or ExecuTorch programs.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from garasam.argtypes import output_dir
from garasam.deploy.runtime import GRAPH_FILES, PRECISIONS
from garasam.errors import ConfigError
from garasam.models.registry import MODEL_TYPES
from garasam.outputs import claim_output

FORMATS = ("onnx", "pt2", "aoti", "pte")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="onnx",
        help="onnx (runs without torch); pt2 (torch.export programs); aoti (AOTInductor packages: "
        "compiled for this CPU and torch, minutes); pte (ExecuTorch, XNNPACK; needs garasam[pte])",
    )
    parser.add_argument("--out", type=output_dir, required=True, help="output folder")
    parser.add_argument(
        "--model-type",
        choices=sorted(MODEL_TYPES),
        help="SAM backbone (default: from the adapters, else tiny)",
    )
    parser.add_argument("--checkpoint", type=Path, help="SAM checkpoint; none: the bundled tiny SAM")
    parser.add_argument(
        "--adapters", type=Path, help="adapter folder (GaRA, LoRA or MoE-LoRA); none: plain SAM"
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32; fp16; int8 (ONNX Runtime's dynamic quantisation); docs/deploy.md has their costs",
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="allow vit_b/l/h without --checkpoint (random weights: for timing and tests only)",
    )


def run(args: argparse.Namespace) -> int:
    if args.format == "pte" and importlib.util.find_spec("executorch") is None:
        raise ConfigError("--format pte needs ExecuTorch: pip install 'garasam[pte]' (executorch)")
    if args.format != "onnx" and args.precision != "fp32":
        raise ConfigError(f"--format {args.format} is fp32; fp16 and int8 are built for --format onnx")
    import torch

    from garasam.assembly import ModelSpec, build_model
    from garasam.deploy.export import export_onnx, export_program

    spec = ModelSpec(args.model_type, args.checkpoint, args.adapters)
    with torch.no_grad():
        model = build_model(spec, device="cpu", fast=False, random_weights=args.random_weights)
    with claim_output(args.out, "export"):
        source = {
            "model_type": args.model_type,
            "checkpoint": None if args.checkpoint is None else Path(args.checkpoint).name,
            "adapters": None if args.adapters is None else Path(args.adapters).name,
        }
        if args.format == "onnx":
            export_onnx(model, args.out, source, args.precision)
        else:
            export_program(model, args.out, source, args.format)
    encoder, decoder = GRAPH_FILES[args.format]
    print(f"export: {encoder}, {decoder} and model.json in {args.out}")
    return 0
