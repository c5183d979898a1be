"""Diagnostic (a) of docs/miniature.md: can the adapters learn at all? Memorise 16 fixed degraded scenes.

    python scripts/miniature_memorise.py --out memorise_out

16 target-family training scenes (seeds 0-15), scene i degraded once and for all by the i-th robustseg
degradation (scene 15 stays clean), are written as a plain image folder. LoRA-16, GaRA and full
fine-tuning train on exactly those images (no further degradation, 300 steps of batch 4), and are
evaluated, with the frozen tiny SAM, on exactly those images and prompts. If the pipeline can learn,
every trained model must rise far above the frozen one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from garasam.assembly import build_models
from garasam.data.degradations import get_suite, seed_for
from garasam.data.images import save_jpeg, save_masks
from garasam.data.readers import CLEAN_DIR, MASKS_DIR, open_dataset
from garasam.data.synthetic import generate_scene
from garasam.eval.protocol import evaluate
from garasam.eval.stats import Bootstrap, stack_scores
from garasam.io import atomic_write_text
from garasam.miniature.plan import ARMS, lr_for
from garasam.train import load_config, train

SCENES, STEPS, BATCH = 16, 300, 4
TRAINED = ("lora16", "gara", "full_finetune")


def write_fixed_scenes(root: Path) -> str:
    """Scene i under the i-th degradation of the suite (the last one clean), as a robustseg folder."""
    suite = get_suite("robustseg")
    for i in range(SCENES):
        scene = generate_scene(i, family="target", split="train")
        image, masks = scene.image, np.stack(scene.masks)
        if i < len(suite):
            degradation = suite[i]
            seed = seed_for(scene.meta["image_id"], degradation.name, 1, 0)
            out, warped = degradation(
                torch.from_numpy(image).permute(2, 0, 1)[None].contiguous(),
                [seed],
                severity=1,
                masks=[torch.from_numpy(masks)] if degradation.geometric else None,
            )
            image = np.ascontiguousarray(out[0].permute(1, 2, 0).numpy())
            if degradation.geometric:
                masks = warped[0].numpy()
                masks = masks[masks.reshape(len(masks), -1).any(1)]
        save_masks(root / MASKS_DIR / f"fixed_{i:02d}.npy", list(masks))
        save_jpeg(root / CLEAN_DIR / f"fixed_{i:02d}.jpg", image)
    return f"robustseg:{root}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("memorise_out"))
    parser.add_argument("--steps", type=int, default=STEPS, help=f"training steps (default {STEPS})")
    args = parser.parse_args()
    spec = write_fixed_scenes(args.out / "data")
    adapters: dict[str, Path | None] = {"frozen": None}
    for arm in TRAINED:
        overrides = [
            f"output_dir={args.out / 'runs' / arm}",
            "overwrite=true",
            "model.model_type=tiny",
            f"adapter={json.dumps(ARMS[arm])}",
            f"data.train=[{json.dumps(spec)}]",
            "data.max_objects_per_image=4",
            "data.degradation_weights={clean: 1}",
            f"optim.lr={lr_for(arm)}",
            f"run.batch_size={BATCH}",
            f"run.max_steps={args.steps}",
            "run.device=cpu",
            "run.num_workers=0",
            f"checkpoint.every_steps={args.steps}",
            "logging.tensorboard=false",
        ]
        adapters[arm] = train(load_config(None, overrides)).adapters_dir
    models, info = build_models(adapters, None, None, "cpu")
    results = evaluate(
        models,
        open_dataset(spec, max_objects=4),
        "robustseg",
        ["point", "box"],
        degradations=[],
        device="cpu",
    )
    lines = [
        "| model | point IoU [95% CI] | box IoU [95% CI] | point - frozen | box - frozen |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    record = {}
    for name in adapters:
        cells, record[name] = [name], {}
        diffs = []
        for prompt in ("point", "box"):
            clean = results.conditions[0]
            objects = sorted(results.object_scores(name, prompt, clean))
            boot = Bootstrap(len(objects), seed=0)

            def scores(model: str, prompt: str = prompt, clean=clean, objects=objects):
                # The statistic needs a degraded column; the clean one twice gives Clear unchanged.
                per = results.object_scores(model, prompt, clean)
                return stack_scores([{"clean": per, "copy": per}], ["clean", "copy"], objects)

            est = boot.estimate(name, scores(name), "clear")
            cells.append(est.format())
            diff = boot.difference(name, scores(name), "frozen", scores("frozen"), "clear")
            diffs.append("-" if name == "frozen" else diff.format())
            record[name][prompt] = {
                "iou": est.format(),
                "minus_frozen": diff.format(),
                "objects": len(objects),
            }
        lines.append(f"| {' | '.join(cells + diffs)} |")
    table = "\n".join(lines) + "\n"
    atomic_write_text(args.out / "memorise.md", table)
    atomic_write_text(args.out / "memorise.json", json.dumps(record, indent=2) + "\n")
    print(table)


if __name__ == "__main__":
    main()
