"""Write the bundled SAM 2.1's model card from its pretraining records and one video evaluation per
scene family (J&F, clean and degraded).

    garasam synth --video --family source --num 20 --seed 90000000 --frames 8 --out card2/src
    garasam synth --video --family target --split test --num 20 --frames 8 --out card2/tgt
    garasam synth --video --family zero_shot --split test --num 20 --frames 8 --out card2/zs
    garasam eval --video --data frames:card2/src --only fog,snow,gauss_noise,motion_blur --protocol clicks,semi --out card2/eval_src
    (the same for tgt and zs)
    python scripts/sam2_tiny_model_card.py --pretrain STAGE1.json STAGE2.json \
        --results source=card2/eval_src/results.json target=card2/eval_tgt/results.json \
        zero_shot=card2/eval_zs/results.json --out garasam/assets/sam2.1_tiny.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from garasam.io import atomic_write_text
from garasam.models.sam2 import SAM2_TYPES
from garasam.models.sam2_video import MEMORY_SPECS

FAMILY_NOTES = {
    "source": "held-out clips of its pretraining family (seeds 90,000,000+, never trained on)",
    "target": "the miniature study's target family, test split (what the adapters adapt to)",
    "zero_shot": "the zero-shot family, test split",
}


def card(stages: list[dict], results: dict[str, dict]) -> str:
    spec, memory = SAM2_TYPES["sam2.1_tiny"], MEMORY_SPECS["sam2.1_tiny"]
    lines = [
        "# Model card: bundled `sam2.1_tiny`",
        "",
        "SAM 2.1's architecture (transformers `Sam2VideoModel`: Hiera encoder, FPN neck, prompt encoder,",
        "mask decoder, memory attention, memory encoder, object pointers) shrunk so that tracking runs on a",
        "CPU. Trained by `garasam pretrain-tiny-sam2` on **clean** synthetic scenes and clips of one family",
        "(`source`), so degradations hurt it as they hurt SAM 2.1 and the other families are new domains to",
        "it; its prompt encoder and decoder start from the bundled tiny SAM's (trained on the same clean",
        "scenes) and its coarse feature map is distilled towards that model's embedding. It is the default",
        "model of `garasam track`, the web page's video tab, `garasam eval --video` and video training; it",
        "is not a general segmentation model.",
        "",
        "## Architecture",
        "",
        f"- image encoder: {spec.image_size} px, Hiera stages {list(spec.stages)}, width {spec.embed_dim}, "
        f"global attention in block(s) {list(spec.global_blocks)}, FPN width {spec.fpn_width}",
        f"- memory: {memory.attention_layers} memory-attention layers (feed-forward {memory.attention_feed_forward}), "
        f"{memory.memory_frames} memory frames, {memory.object_pointers} object pointers, memory width 64",
        f"- parameters: {stages[-1]['parameters']:,} ({stages[-1]['parameters'] * 4 / 2**20:.1f} MiB in float32)",
        "",
        "## Training",
        "",
    ]
    for index, stage in enumerate(stages, start=1):
        t = stage["training"]
        origin = (
            "from the previous stage's weights"
            if t["init"] not in (None, "None")
            else f"from scratch, prompt encoder and decoder seeded from the tiny SAM ({t['seeded_from_tiny_sam']} tensors), "
            f"coarse map distilled from it (weight {t['distill']})"
            if t.get("seeded_from_tiny_sam")
            else "from scratch"
        )
        lines.append(
            f"- stage {index} ({stage['stage']}), {origin}: {t['steps_done']} steps of batch {t['batch_size']} in "
            f"{t['seconds'] / 60:.0f} min on {stage['hardware']}, peak lr {t['lr']}, warm-up {t['warmup_steps']} steps; "
            f"held-out quick check afterwards (box IoU on frame 0, tracking IoU on frames 1-5 of "
            f"{t['eval_items']} clips): box {stage['held_out']['box_iou']}, tracking {stage['held_out']['tracking_iou']}"
        )
    lines += [
        "- images stage: per object a box and 1-3 clicks, 20 x focal + dice (best of three for one click), IoU-head MSE,",
        "  object score trained as present; video stage: every parameter, clips of "
        f"{stages[-1]['training']['clip_frames']} frames, prompts on frame 0 (clicks, box or mask) and one correction",
        "  click, the loss over every frame, the object score trained on visibility; AdamW, warm-up then cosine decay",
        "",
        "## Evaluation",
        "",
        "`garasam eval --video` (J&F x 100 with 95% bootstrap intervals over clips; each object prompted on",
        "frame 0, frames 1 to N-2 scored), one section per scene family:",
        "",
    ]
    for family, report in results.items():
        summary = report["summary"]["frozen"]
        conditions = report["settings"]["conditions"]
        lines += [f"### {family}: {FAMILY_NOTES[family]} ({len(report['clips'])} clips)", ""]
        lines += ["| protocol | " + " | ".join(conditions) + " |", "| --- |" + " ---: |" * len(conditions)]
        for protocol, cells in summary.items():
            row = []
            for condition in conditions:
                value = cells.get(condition, {}).get("J&F")
                row.append(
                    "n/a"
                    if value is None
                    else f"{100 * value['value']:.1f} [{100 * value['low']:.1f}, {100 * value['high']:.1f}]"
                )
            lines.append(f"| {protocol} | " + " | ".join(row) + " |")
        lines.append("")
    lines += [
        "## Limits",
        "",
        "A miniature trained for under an hour and a half on two CPU cores: it follows objects of its own family",
        "(the held-out clips' J&F above) and much less well on the other families, and its memory saw a few",
        "hundred training steps; a lent GPU would train it for longer with `garasam pretrain-tiny-sam2`. Use",
        "Meta's SAM 2.1 weights for real video.",
        "",
        "## Reproduce",
        "",
        "The stages' records (settings, loss history, held-out checks) are `sam2.1_tiny.json` (the last stage)",
        "and `sam2.1_tiny.stage<N>.json` beside this card; the evaluation is the commands at the top of",
        "`scripts/sam2_tiny_model_card.py`, with `--model-type sam2.1_tiny`, 20 clips per family and the",
        "weights given by `--checkpoint`.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pretrain", nargs="+", type=Path, required=True)
    parser.add_argument("--results", nargs="+", required=True, metavar="FAMILY=RESULTS_JSON")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    stages = [json.loads(p.read_text()) for p in args.pretrain]
    results = {}
    for item in args.results:
        family, _, path = item.partition("=")
        results[family] = json.loads(Path(path).read_text())
    atomic_write_text(args.out, card(stages, results))


if __name__ == "__main__":
    main()
