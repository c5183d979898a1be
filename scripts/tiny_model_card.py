"""Write the bundled tiny SAM's model card from its pretraining records and one evaluation per scene family.

    garasam synth --family source --num 100 --seed 90000000 --out card/src
    garasam synth --family target --split test --num 100 --out card/tgt
    garasam synth --family zero_shot --split test --num 100 --out card/zs
    garasam eval --data robustseg:card/src --model frozen=none --out card/eval_src --examples 0
    (the same for tgt and zs)
    python scripts/tiny_model_card.py --pretrain garasam/assets/tiny_sam.stage1.json \
        garasam/assets/tiny_sam.stage2.json garasam/assets/tiny_sam.json \
        --results source=card/eval_src/results.json target=card/eval_tgt/results.json \
        zero_shot=card/eval_zs/results.json --out garasam/assets/tiny_sam.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from garasam.io import atomic_write_text

FAMILY_NOTES = {
    "source": "held-out scenes of its pretraining family (seeds 90,000,000+, never trained on)",
    "target": "the miniature study's target family, test split (what the adapters adapt to)",
    "zero_shot": "the zero-shot family, test split",
}


def card(stages: list[dict], results: dict[str, dict]) -> str:
    iou = {
        (family, r["degradation"], r["prompt"]): 100 * r["iou"]
        for family, report in results.items()
        for r in report["results"]
        if r["model"] == "frozen"
    }
    first = next(iter(results.values()))
    degradations = [
        r["degradation"]
        for r in first["results"]
        if r["model"] == "frozen" and r["prompt"] == "point" and r["degradation"] != "clean"
    ]
    pretrain = stages[-1]
    vision = pretrain["config"]
    columns = [(family, prompt) for family in results for prompt in ("point", "box")]
    lines = [
        "# Model card: bundled `tiny` SAM",
        "",
        "SAM's architecture (transformers `SamModel`: windowed and global encoder blocks, prompt encoder,",
        "two-way mask decoder) shrunk so that CPU inference takes milliseconds. Trained from scratch by",
        "`garasam pretrain-tiny` on **clean** scenes of one synthetic family (`source`, the SA-1B analogue of",
        "the miniature study), so degradations hurt it as they hurt SAM, and the study's other families are",
        "new domains to it. It is the embedded default of every command and of `garasam demo`; it is not a",
        "general segmentation model.",
        "",
        "## Architecture",
        "",
        f"- image encoder: {vision['image_size']} px input, patch {vision['patch_size']}, width "
        f"{vision['hidden_size']}, {vision['num_hidden_layers']} blocks ({vision['num_attention_heads']} heads), "
        f"global attention in blocks {vision['global_attn_indexes']}, window {vision['window_size']}, "
        f"neck {vision['output_channels']} channels",
        f"- mask decoder: width {vision['decoder']['hidden_size']}, MLP {vision['decoder']['mlp_dim']}, "
        f"{vision['decoder']['num_attention_heads']} heads",
        f"- parameters: {pretrain['parameters']:,} ({pretrain['parameters'] * 4 / 2**20:.1f} MiB in float32)",
        "",
        "## Training",
        "",
        f"- data: {pretrain['data']} (the generator of `garasam synth --family source`)",
        *[_stage_line(number, stage) for number, stage in enumerate(stages, 1)],
        "- loss: 20 x focal + dice + IoU-head MSE, at the decoder's resolution; SAM's output choice (best of 3"
        " masks for a single point, the one single-mask output for several points and for boxes) except where a"
        " stage says otherwise; AdamW, linear warm-up then cosine decay to 5% of the peak learning rate",
        "",
        "## Evaluation",
        "",
        "`garasam eval` protocol: one most-interior point or the tight box per object, per-object IoU in %,",
        "each degradation of the robustseg suite applied on the fly. One column pair per scene family:",
        "",
        *[
            f"- {family}: {report['num_images']} scenes, "
            f"{next(r['count'] for r in report['results'] if r['degradation'] == 'clean')} objects; "
            f"{FAMILY_NOTES.get(family, '')}"
            for family, report in results.items()
        ],
        "",
        "| condition | " + " | ".join(f"{family} {prompt}" for family, prompt in columns) + " |",
        "| --- |" + " ---: |" * len(columns),
        "| clear | " + " | ".join(f"{iou[(f, 'clean', p)]:.1f}" for f, p in columns) + " |",
    ]
    for name in degradations:
        lines.append(
            f"| {name} | "
            + " | ".join(
                f"{iou[(f, name, p)]:.1f} ({iou[(f, name, p)] - iou[(f, 'clean', p)]:+.1f})"
                for f, p in columns
            )
            + " |"
        )
    mean = {(f, p): sum(iou[(f, d, p)] for d in degradations) / len(degradations) for f, p in columns}
    lines += [
        "| **degraded mean** | "
        + " | ".join(f"{mean[(f, p)]:.1f} ({mean[(f, p)] - iou[(f, 'clean', p)]:+.1f})" for f, p in columns)
        + " |",
        "",
        "Numbers in brackets: change from clear.",
        "",
    ]
    return "\n".join(lines)


def _stage_line(number: int, stage: dict) -> str:
    training = stage["training"]
    # Stages 1-3 recorded the quick check on the former test split; later ones on held-out source scenes.
    quick = stage.get("clear_iou_held_out_source") or stage["clear_iou_test_split"]
    start = "from scratch" if not training.get("init") else "from the previous stage's weights"
    return (
        f"- stage {number}, {start}: {training['steps_done']} steps of batch {training['batch_size']} in "
        f"{training['seconds'] / 60:.0f} min on {stage['hardware']}, peak lr {training['lr']}, weight decay "
        f"{training['weight_decay']}, warm-up {training['warmup_steps']} steps; clear IoU afterwards (quick check "
        f"on {training['eval_scenes']} test scenes): point {quick['point']}, "
        f"box {quick['box']}; command `garasam pretrain-tiny"
        + (f" --init <stage {number - 1} weights>" if training.get("init") else "")
        + f" --time-budget {training['time_budget']:.0f} --batch-size {training['batch_size']} --lr {training['lr']}"
        f" --warmup-steps {training['warmup_steps']} --workers {training['workers']}"
        + (f" --seed {training['seed']}" if training.get("seed") else "")
        + "`"
        + (f"; {stage['recipe']}" if stage.get("recipe") else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pretrain", type=Path, nargs="+", required=True, help="pretraining records, in order"
    )
    parser.add_argument(
        "--results",
        nargs="+",
        required=True,
        metavar="FAMILY=PATH",
        help="garasam eval results.json per family",
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    stages = [json.loads(path.read_text()) for path in args.pretrain]
    pairs = [item.partition("=") for item in args.results]
    if any(not sep or not family for family, sep, _ in pairs):
        parser.error("--results takes FAMILY=PATH pairs, e.g. source=card/eval_src/results.json")
    text = card(stages, {family: json.loads(Path(path).read_text()) for family, _, path in pairs})
    atomic_write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
