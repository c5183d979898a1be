"""Run the miniature study (or the demo, its one-seed core): data, training of every arm and seed,
evaluation on the seen and zero-shot test sets, bootstrap analysis and the paper's claims.

Every step leaves its result on disk and is skipped when it is already there, so a run that was
stopped continues where it stopped (`garasam study --out DIR` again). Training goes through
`garasam.train.train` and evaluation through `garasam.eval.protocol.evaluate`, exactly as a user
would run them; the runner only fixes their settings (garasam.miniature.plan).
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from garasam.errors import ConfigError
from garasam.io import atomic_write_text
from garasam.miniature.plan import (
    ARM_OVERRIDES,
    PROMPTS,
    SPLIT_FAMILIES,
    TEST_SETS,
    StudyPlan,
    lr_for,
    run_name,
)
from garasam.miniature.plan import ARMS as ARM_ADAPTERS
from garasam.runtime import resolve_device

DONE = "study_done.json"


def run_miniature(
    out: Path,
    plan: StudyPlan,
    *,
    model_type: str | None = None,
    checkpoint: str | None = None,
    data: str | None = None,
    test_data: dict[str, str] | None = None,
    device: str = "auto",
    examples: int = 0,
    log: Any = print,
) -> dict[str, Any]:
    """Run `plan` into `out`; returns the analysis (tables, claims, timings) also written to study.json."""
    from garasam.miniature.analysis import analyse

    if (data is None) != (test_data is None):
        raise ConfigError("--data and --test-data go together (training and held-out evaluation data)")
    if checkpoint is not None and model_type is None:
        raise ConfigError("--checkpoint needs --model-type (vit_b, vit_l or vit_h)")
    start = time.time()
    out = Path(out)
    device = resolve_device(device)
    if data is None:
        data, test_data = synthetic_splits(out / "data", plan)
    assert test_data is not None
    timings: dict[str, float] = {}
    adapters: dict[str, Path | None] = {"frozen": None}
    trained = [(arm, seed) for seed in plan.seeds for arm in plan.arms if arm != "frozen"]
    for number, (arm, seed) in enumerate(trained, 1):
        name = run_name(arm, seed)
        log(f"[{number}/{len(trained)}] training {name} ({plan.steps} steps, lr {lr_for(arm):g})")
        began = time.time()
        adapters[name] = train_arm(out / "runs" / name, arm, seed, plan, data, model_type, checkpoint, device)
        timings[f"train_{name}"] = round(time.time() - began, 1)
    for test_set, spec in test_data.items():
        began = time.time()
        log(f"evaluating {len(adapters)} models on the {test_set} test set ({spec})")
        evaluate_all(out / "eval" / test_set, adapters, spec, plan, model_type, checkpoint, device, examples)
        timings[f"eval_{test_set}"] = round(time.time() - began, 1)
    analysis = analyse(out / "eval", plan)
    machine = environment(device)
    analysis["markdown"] += (
        f"\nRun on {machine['cpu']} with {machine['torch_threads']} torch thread(s), torch "
        f"{machine['torch']}, garasam {machine['garasam']}. Another run with all four the same writes "
        "byte-identical adapters; another thread count or CPU type sums floats in another order, "
        "which changes the adapters in their last bits and the tables within their intervals.\n"
    )
    summary = {
        "plan": asdict(plan),
        "train_data": data,
        "test_data": test_data,
        "device": device,
        "environment": machine,
        "timings_s": timings,
        "wall_time_s": round(time.time() - start, 1),
        **analysis,
    }
    atomic_write_text(out / "study.json", json.dumps(summary, indent=2) + "\n")
    return summary


def environment(device: str) -> dict[str, object]:
    """What a bit-identical rerun needs the same (measured: 1 against 2 threads, different adapters
    after 3 training steps; the same thread count, the same bytes)."""
    import platform

    import torch

    from garasam.version import __version__

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    if device.startswith("cuda"):
        cpu = f"{torch.cuda.get_device_name(device)} (host CPU {cpu})"
    return {
        "cpu": cpu,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "garasam": __version__,
    }


def synthetic_splits(root: Path, plan: StudyPlan) -> tuple[str, dict[str, str]]:
    """Write the target train split and the two test sets; returns their `robustseg:` specs."""
    from garasam.data.synthetic import write_scenes

    sizes = {"train": plan.train_scenes, "seen": plan.seen_scenes, "zero_shot": plan.zero_shot_scenes}
    specs = {}
    for split, (family, family_split) in SPLIT_FAMILIES.items():
        write_scenes(root / split, sizes[split], 0, family=family, split=family_split)
        specs[split] = f"robustseg:{root / split}"
    return specs["train"], {name: specs[name] for name in TEST_SETS}


def train_arm(
    run_dir: Path,
    arm: str,
    seed: int,
    plan: StudyPlan,
    data: str,
    model_type: str | None,
    checkpoint: str | None,
    device: str,
) -> Path:
    """Train one arm with one seed (skipped when a finished run is there); returns its adapter folder."""
    from garasam.train import load_config, train

    done = run_dir / DONE
    if done.is_file():
        return Path(json.loads(done.read_text())["adapters_dir"])
    overrides = [
        f"output_dir={run_dir}",
        "overwrite=true",
        f"model.model_type={model_type or 'tiny'}",
        f"model.checkpoint={json.dumps(checkpoint)}",
        f"adapter={json.dumps(ARM_ADAPTERS[arm])}",
        f"data.train=[{json.dumps(data)}]",
        f"data.max_objects_per_image={plan.max_objects}",
        f"optim.lr={lr_for(arm)}",
        f"run.batch_size={plan.batch_size}",
        f"run.max_steps={plan.steps}",
        f"run.seed={seed}",
        f"run.device={device}",
        "run.num_workers=0",
        f"checkpoint.every_steps={plan.steps}",
        "logging.tensorboard=true",  # `tensorboard --logdir <out>/runs` shows every arm (logging only)
        *ARM_OVERRIDES.get(arm, ()),
    ]
    return finish_run(run_dir, arm, seed, train(load_config(None, overrides)))


def finish_run(run_dir: Path, arm: str, seed: int, result: Any) -> Path:
    """Mark a completed training run done (its adapter folder recorded, so a resumed study skips
    it); a run that did not complete is an error that says to run again."""
    if result.status != "completed" or result.adapters_dir is None:
        raise ConfigError(
            f"{run_dir}: training {arm} (seed {seed}) ended {result.status}; run again to resume"
        )
    record = {"arm": arm, "seed": seed, "adapters_dir": str(result.adapters_dir), "seconds": result.seconds}
    atomic_write_text(run_dir / DONE, json.dumps(record, indent=2) + "\n")
    return result.adapters_dir


def evaluate_all(
    out: Path,
    adapters: dict[str, Path | None],
    spec: str,
    plan: StudyPlan,
    model_type: str | None,
    checkpoint: str | None,
    device: str,
    examples: int,
) -> None:
    """Every model on one test set in one protocol run (identical views and prompts); skipped when the
    report of exactly these models is there."""
    from garasam.assembly import build_models
    from garasam.data.readers import open_dataset
    from garasam.eval.protocol import evaluate
    from garasam.eval.report import write_report

    results_file = out / "results.json"
    done = results_file.is_file() and (out / "objects.csv").is_file()
    if done and list(json.loads(results_file.read_text())["models"]) == list(adapters):
        return
    models, info = build_models(adapters, model_type, checkpoint, device)
    results = evaluate(
        models,
        open_dataset(spec, max_objects=plan.max_objects),
        "robustseg",
        list(PROMPTS),
        device=device,
        examples=examples,
        model_info=info,
        dataset_name=spec,
    )
    write_report(results, out)
