"""What fp16 and int8 exports cost in IoU: the pre-registered measurement of docs/deploy.md.

    .venv/bin/python scripts/export_precision.py --out export_precision_out

The bundled tiny SAM with the bundled demo GaRA adapters, PyTorch fp32 against its ONNX exports at
fp32, fp16 and int8, on the miniature's seen test set (40 target/test scenes, seed 0), clean plus
the 15 Robust-Seg degradations built by the evaluation protocol's own view source, with its prompts
(tight box, single mask; most interior point, multimask, best predicted IoU). Writes
`export_precision.json` and `export_precision.md` (Clear / Degrade per backend, differences to
PyTorch with paired bootstrap 95% intervals, gate agreement).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from garasam.adapters.inspect import adapter_layers  # noqa: E402
from garasam.data.readers import open_dataset  # noqa: E402
from garasam.data.synthetic import write_scenes  # noqa: E402
from garasam.deploy import ExportedPredictor  # noqa: E402
from garasam.deploy.export import export_onnx  # noqa: E402
from garasam.eval.conditions import plan_conditions  # noqa: E402
from garasam.eval.stats import Bootstrap, stack_scores  # noqa: E402
from garasam.eval.views import ViewSource  # noqa: E402
from garasam.io import atomic_write_text  # noqa: E402
from garasam.predict import from_pretrained  # noqa: E402

ADAPTERS = ROOT / "garasam" / "assets" / "tiny_gara"
PRECISIONS = ("fp32", "fp16", "int8")


def segment(predictor: object, prompt: object, kind: str) -> np.ndarray:
    """The protocol's mask: boxes single-mask; a point multimask, the best predicted IoU."""
    if kind == "box":
        masks, _, _ = predictor.predict(box=prompt.box, multimask_output=False)
        return masks[0]
    masks, scores, _ = predictor.predict(point_coords=prompt.points, point_labels=prompt.labels)
    return masks[int(np.argmax(scores))]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def decisions(predictor: object) -> np.ndarray:
    if isinstance(predictor, ExportedPredictor):
        return np.concatenate([d["segment"] for d in predictor.gate_decisions().values()])
    return np.concatenate(
        [layer.gate_state.segment.numpy() for layer in adapter_layers(predictor.model).values()]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("export_precision_out"))
    parser.add_argument("--scenes", type=int, default=40)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    write_scenes(args.out / "seen", args.scenes, 0, family="target", split="test")
    dataset = open_dataset(f"robustseg:{args.out / 'seen'}")
    backends: dict[str, object] = {"pytorch": from_pretrained(ADAPTERS, device="cpu")}
    for precision in PRECISIONS:
        model = from_pretrained(ADAPTERS, device="cpu").model
        backends[f"onnx_{precision}"] = ExportedPredictor(
            export_onnx(model, args.out / f"onnx_{precision}", precision=precision)
        )
    conditions = plan_conditions("robustseg", None, None)
    transform = backends["pytorch"].transform
    source = ViewSource(
        dataset,
        range(len(dataset)),
        conditions,
        "robustseg",
        ("point", "box"),
        "fly",
        0,
        [transform],
        len(conditions),
    )
    scores = {name: {kind: {} for kind in ("point", "box")} for name in backends}
    agreement = {name: [] for name in backends if name != "pytorch"}
    for index in tqdm(range(len(source)), desc="scenes", unit="scene"):
        item = source[index]
        for view in item.views:
            label = view.condition.label
            for predictor in backends.values():
                predictor.set_image(view.image)
            reference = decisions(backends["pytorch"])
            for name in agreement:
                agreement[name].append(float((decisions(backends[name]) == reference).mean()))
            for kind in ("point", "box"):
                for object_id, mask, prompt in zip(
                    view.object_ids, view.masks, view.prompts[kind], strict=True
                ):
                    key = f"{item.image_id}/{object_id}"
                    for name, predictor in backends.items():
                        scores[name][kind].setdefault(label, {})[key] = iou(
                            segment(predictor, prompt, kind), mask
                        )
    labels = [c.label for c in conditions]
    summary: dict[str, object] = {"scenes": args.scenes, "conditions": labels, "prompts": {}}
    lines = [
        "| prompt | backend | Clear IoU % | Degrade IoU % | Clear - PyTorch | Degrade - PyTorch | gate decisions equal |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for kind in ("point", "box"):
        objects = sorted({key for per in scores["pytorch"][kind].values() for key in per})
        stacked = {name: stack_scores([scores[name][kind]], labels, objects) for name in backends}
        boot = Bootstrap(len(objects), 2000, 0)
        rows = {}
        for name in backends:
            row = {stat: boot.estimate(name, stacked[name], stat) for stat in ("clear", "degrade")}
            if name != "pytorch":
                row |= {
                    f"{stat}_diff": boot.difference(name, stacked[name], "pytorch", stacked["pytorch"], stat)
                    for stat in ("clear", "degrade")
                }
            rows[name] = row
            same = "" if name == "pytorch" else f"{100 * np.mean(agreement[name]):.2f}%"
            diffs = (
                ["", ""]
                if name == "pytorch"
                else [row["clear_diff"].format(digits=2), row["degrade_diff"].format(digits=2)]
            )
            lines.append(
                f"| {kind} | {name} | {row['clear'].format()} | {row['degrade'].format()} | {diffs[0]} | {diffs[1]} | {same} |"
            )
        summary["prompts"][kind] = {
            name: {key: {"value": e.value, "low": e.low, "high": e.high} for key, e in row.items()}
            for name, row in rows.items()
        }
    summary["gate_agreement"] = {name: float(np.mean(values)) for name, values in agreement.items()}
    summary["objects"] = len(objects)
    atomic_write_text(args.out / "export_precision.json", json.dumps(summary, indent=1) + "\n")
    atomic_write_text(args.out / "export_precision.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
