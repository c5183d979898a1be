"""Training-step speed: images/s and peak memory of GaRA next to plain LoRA-16, per SAM backbone.

Each row times the real training step of `garasam.train` on one device: upload of a uint8 batch
(already degraded: degradations run at the original resolution in the data loader's workers, outside
the timed step, since issue 19), SAM preprocessing, encoder with adapters, one decoder call per prompt group, focal +
dice + IoU loss, backward, grad-norm clipping and an Adam step. Random SAM weights, synthetic
scenes at the model's input size with random training prompts (`garasam.data.synthetic`), bf16
autocast on CUDA and fp32 on CPU, the paper's batch of 8 by default.

    python benchmarks/train_step.py --device cuda --models vit_b,vit_l,vit_h --batch 8 --steps 10
    python benchmarks/train_step.py --device cuda --models vit_h --checkpointing
    python benchmarks/train_step.py --device cuda --models vit_b --fast on,off   # fast encoder vs not
    python benchmarks/train_step.py --device cpu --models tiny --batch 2 --steps 2   # smoke run
"""

from __future__ import annotations

import argparse
import itertools
import sys
import traceback
import warnings
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` and an uninstalled `garasam` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from benchmarks.common import (  # noqa: E402
    Report,
    device_name,
    environment,
    format_cell,
    free_device_memory,
    markdown_table,
    time_fn,
)
from garasam.adapters import trainable_parameters  # noqa: E402
from garasam.data.synthetic import generate_scene  # noqa: E402
from garasam.data.transforms import SamTransform  # noqa: E402
from garasam.runtime import DistContext, autocast_for, uses_bf16  # noqa: E402
from garasam.train.config import load_config  # noqa: E402
from garasam.train.data import TrainCollate, TrainDataset, to_device  # noqa: E402
from garasam.train.setup import build_training_model  # noqa: E402
from garasam.train.step import PromptedSam, forward_backward, loss_weights  # noqa: E402

ADAPTERS = {"gara": ["adapter.adapter_type=gara"], "lora16": ["adapter.adapter_type=lora", "adapter.rank=16"]}
FAST = {"auto": "null", "on": "true", "off": "false"}  # --fast values as run.fast_encoder overrides
COLUMNS = [
    "model",
    "adapter",
    "batch",
    "precision",
    "checkpointing",
    "fast encoder",
    "ms/step",
    "images/s",
    "peak memory GiB",
    "trainable params",
    "objects/step",
]


def measure(
    model_type: str, adapter: str, fast: str, args: argparse.Namespace, device: torch.device
) -> dict[str, object]:
    """Time `args.steps` training steps of one backbone + adapter after `args.warmup` untimed ones."""
    config = load_config(
        None,
        [
            f"model.model_type={model_type}",
            f"run.batch_size={args.batch}",
            f"run.activation_checkpointing={str(args.checkpointing).lower()}",
            f"run.fast_encoder={FAST[fast]}",
            *ADAPTERS[adapter],
        ],
    )
    torch.manual_seed(0)
    with warnings.catch_warnings():  # random weights are what a benchmark wants
        warnings.filterwarnings("ignore", "model.checkpoint is not set")
        sam = build_training_model(config, device)
    sam.train()
    module = PromptedSam(sam)
    params = [p for p in sam.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    size = sam.config.vision_config.image_size
    scenes = [generate_scene(seed, size=(size, size)) for seed in range(args.batch)]
    dataset = TrainDataset(scenes, range(len(scenes)), config.data, config.prompts, seed=0)
    batch = TrainCollate(size)([dataset[(0, i)] for i in range(len(scenes))])
    transform = SamTransform(size)
    autocast = autocast_for(device, config.run.precision)
    weights = loss_weights(config)
    ctx = DistContext(0, 0, 1, device, owns_group=False)
    objects = 0

    def step() -> None:
        nonlocal objects
        with torch.no_grad():
            device_batch = to_device(batch, transform, config.prompts.multimask, device)
        objects = device_batch.num_objects
        optimizer.zero_grad(set_to_none=True)
        forward_backward(module, device_batch, weights, autocast, ctx)
        torch.nn.utils.clip_grad_norm_(params, config.optim.grad_clip)
        optimizer.step()

    timing = time_fn(step, device, warmup=args.warmup, repeats=args.steps)
    peak = timing.peak_memory_bytes
    return {
        "model": model_type,
        "adapter": adapter,
        "batch": args.batch,
        "precision": "bf16" if uses_bf16(device, config.run.precision) else "fp32",
        "checkpointing": "yes" if args.checkpointing else "no",
        "fast encoder": fast,
        "ms/step": timing.median_ms,
        "images/s": args.batch / (timing.median_ms / 1e3),
        "peak memory GiB": peak / 2**30 if peak is not None else None,
        "trainable params": f"{trainable_parameters(sam).trainable:,}",
        "objects/step": objects,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default="vit_b,vit_l,vit_h", help="comma-separated model types")
    parser.add_argument(
        "--adapters", default="gara,lora16", help=f"comma-separated, of {', '.join(ADAPTERS)}"
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="timed steps (the median is reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument(
        "--checkpointing", action="store_true", help="activation checkpointing of encoder blocks"
    )
    parser.add_argument(
        "--fast", default="auto", help="comma-separated run.fast_encoder values (auto, on, off) to compare"
    )
    parser.add_argument("--out", type=Path, help="also write the table to this Markdown file (+ .json)")
    args = parser.parse_args(argv)
    unknown = set(args.fast.split(",")) - set(FAST)
    if unknown:
        parser.error(f"--fast takes {', '.join(FAST)}; got {', '.join(sorted(unknown))}")
    device = torch.device(args.device)
    env = environment(device)
    title = f"Training step on {device_name(device)}"
    report = Report(args.out, title, args.out.with_suffix(".json")) if args.out else None
    rows = []
    for model_type, adapter, fast in itertools.product(
        args.models.split(","), args.adapters.split(","), args.fast.split(",")
    ):
        try:
            row = measure(model_type.strip(), adapter.strip(), fast.strip(), args, device)
        except torch.cuda.OutOfMemoryError:
            row = {"model": model_type, "adapter": adapter, "fast encoder": fast, "ms/step": "out of memory"}
        except Exception:  # report the failure in the table and go on with the next row
            traceback.print_exc()
            row = {"model": model_type, "adapter": adapter, "fast encoder": fast, "ms/step": "failed"}
        rows.append(row)
        free_device_memory(device)
        if report is not None:
            report.section("results", COLUMNS)
            report.add_row("results", row)
        print(
            f"{row['model']} {row['adapter']} fast={fast}: {format_cell(row.get('ms/step'))} ms/step",
            file=sys.stderr,
            flush=True,
        )
    print(f"# {title}\n")
    print(", ".join(f"{k} {v}" for k, v in env.items()) + "\n")
    print("\n".join(markdown_table(COLUMNS, rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
