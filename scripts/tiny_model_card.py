"""Write the bundled tiny SAM's model card from its pretraining record and an evaluation report.

    garasam synth --out /tmp/card_test --num 100 --seed 7000000 --split test
    garasam eval --data robustseg:/tmp/card_test --model frozen=none --out /tmp/card_eval
    python scripts/tiny_model_card.py --pretrain garasam/assets/tiny_sam.stage1.json \
        garasam/assets/tiny_sam.stage2.json garasam/assets/tiny_sam.json \
        --results /tmp/card_eval/results.json --out garasam/assets/tiny_sam.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from garasam.io import atomic_write_text


def card(stages: list[dict], results: dict) -> str:
    rows = [r for r in results["results"] if r["model"] == "frozen"]
    iou = {(r["degradation"], r["prompt"]): 100 * r["iou"] for r in rows}
    count = {(r["degradation"], r["prompt"]): r["count"] for r in rows}
    degradations = [r["degradation"] for r in rows if r["prompt"] == "point" and r["degradation"] != "clean"]
    pretrain = stages[-1]
    vision = pretrain["config"]
    lines = [
        "# Model card: bundled `tiny` SAM",
        "",
        "SAM's architecture (transformers `SamModel`: windowed and global encoder blocks, prompt encoder,",
        "two-way mask decoder) shrunk so that CPU inference takes milliseconds. Trained from scratch by",
        "`garasam pretrain-tiny` on **clean** synthetic scenes only, so degradations hurt it as they hurt",
        "SAM. It is the embedded default of every command and of `garasam demo`; it is not a general",
        "segmentation model.",
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
        f"- data: {pretrain['data']}",
        *[_stage_line(number, stage) for number, stage in enumerate(stages, 1)],
        "- loss: 20 x focal + dice + IoU-head MSE, at the decoder's resolution; SAM's output choice (best of 3"
        " masks for a single point, the one single-mask output for several points and for boxes) except where a"
        " stage says otherwise; AdamW, linear warm-up then cosine decay to 5% of the peak learning rate",
        "",
        "## Evaluation",
        "",
        f"{results['num_images']} clean test-split synthetic scenes (other seeds, backgrounds and object shapes "
        "than training), `garasam eval` protocol: one most-interior point or the tight box per object,",
        "per-object IoU in %, each degradation of the robustseg suite applied on the fly.",
        "",
        "| condition | point IoU | box IoU | objects |",
        "| --- | ---: | ---: | ---: |",
        f"| clear | {iou[('clean', 'point')]:.1f} | {iou[('clean', 'box')]:.1f} | {count[('clean', 'point')]} |",
    ]
    for name in degradations:
        lines.append(
            f"| {name} | {iou[(name, 'point')]:.1f} ({iou[(name, 'point')] - iou[('clean', 'point')]:+.1f}) "
            f"| {iou[(name, 'box')]:.1f} ({iou[(name, 'box')] - iou[('clean', 'box')]:+.1f}) "
            f"| {count[(name, 'point')]} |"
        )
    mean = {p: sum(iou[(d, p)] for d in degradations) / len(degradations) for p in ("point", "box")}
    lines += [
        f"| **degraded mean** | {mean['point']:.1f} ({mean['point'] - iou[('clean', 'point')]:+.1f}) "
        f"| {mean['box']:.1f} ({mean['box'] - iou[('clean', 'box')]:+.1f}) | |",
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
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    stages = [json.loads(path.read_text()) for path in args.pretrain]
    text = card(stages, json.loads(args.results.read_text()))
    atomic_write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
