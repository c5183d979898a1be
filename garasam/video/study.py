"""Run the robust-video miniature (`garasam study --video`) or its one-seed core (`garasam demo
--video`): synthetic clips, training of every arm and seed (`garasam.video.training.train_video`, as
`garasam train` runs a video recipe), every model evaluated on the seen and zero-shot test sets
(`garasam.video.evaluate`, as `garasam eval --video`), and the analysis with the pre-registered
claims (`garasam.video.study_analysis`, docs/video-miniature.md).

Every step leaves its result on disk and is skipped when it is there, so a stopped run continues
where it stopped when started again with the same `--out`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from garasam.io import atomic_write_text
from garasam.miniature.runner import DONE, environment, finish_run
from garasam.outputs import pin_settings
from garasam.runtime import resolve_device
from garasam.video.study_plan import ARMS, SIZE, SPLIT_FAMILIES, TEST_SETS, VideoStudyPlan, lr_for, run_name

MODEL_TYPE = "sam2.1_tiny"


def run_video_study(
    out: Path, plan: VideoStudyPlan, *, device: str = "auto", log: Any = print
) -> dict[str, Any]:
    """Run `plan` into `out`; returns the analysis (tables, claims, timings), also written to
    study.json and study.md."""
    from garasam.video.study_analysis import analyse

    start = time.time()
    out = Path(out)
    device = resolve_device(device)
    pin_settings(out, "video_plan.json", asdict(plan))
    data = synthetic_clips(out / "data", plan)
    timings: dict[str, float] = {}
    adapters: dict[str, Path | None] = {"frozen": None}
    trained = [(arm, seed) for seed in plan.seeds for arm in plan.arms if arm != "frozen"]
    for number, (arm, seed) in enumerate(trained, 1):
        name = run_name(arm, seed)
        log(f"[{number}/{len(trained)}] training {name} ({plan.steps} steps, lr {lr_for(arm):g})")
        began = time.time()
        adapters[name] = train_arm(out / "runs" / name, arm, seed, plan, data["train"], device)
        timings[f"train_{name}"] = round(time.time() - began, 1)
    for test_set in TEST_SETS:
        began = time.time()
        log(f"evaluating {len(adapters)} models on the {test_set} test set")
        evaluate_all(out / "eval" / test_set, adapters, data[test_set], plan, device)
        timings[f"eval_{test_set}"] = round(time.time() - began, 1)
    analysis = analyse(out / "eval", plan)
    machine = environment(device)
    wall = round(time.time() - start, 1)
    analysis["markdown"] += (
        f"\nRun on {machine['cpu']} with {machine['torch_threads']} torch thread(s), torch {machine['torch']}, "
        f"garasam {machine['garasam']}; {wall:.0f} s wall (a resumed run counts only its last part).\n"
    )
    summary = {
        "plan": asdict(plan),
        "device": device,
        "environment": machine,
        "timings_s": timings,
        "wall_time_s": wall,
        **analysis,
    }
    atomic_write_text(out / "study.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / "study.md", analysis["markdown"])
    return summary


def synthetic_clips(root: Path, plan: VideoStudyPlan) -> dict[str, str]:
    """The train split and both test sets as frames + masks folders; returns their clip specs."""
    from garasam.data.synthetic_video import write_clips

    sizes = {"train": plan.train_clips, "seen": plan.test_clips, "zero_shot": plan.test_clips}
    for split, (family, family_split) in SPLIT_FAMILIES.items():
        write_clips(root / split, sizes[split], 0, (SIZE, SIZE), plan.clip_frames, family, family_split)
    return {split: f"frames:{root / split}" for split in SPLIT_FAMILIES}


def train_arm(run_dir: Path, arm: str, seed: int, plan: VideoStudyPlan, data: str, device: str) -> Path:
    """Train one arm with one seed (skipped when a finished run is there); returns its adapter folder."""
    from garasam.train import load_config
    from garasam.video.train_config import VideoTrainConfig
    from garasam.video.training import train_video

    done = run_dir / DONE
    if done.is_file():
        return Path(json.loads(done.read_text())["adapters_dir"])
    overrides = [
        f"output_dir={run_dir}",
        "overwrite=true",
        f"model.model_type={MODEL_TYPE}",
        f"adapter={json.dumps(ARMS[arm])}",
        f"data.train=[{json.dumps(data)}]",
        f"data.frames={plan.train_frames}",
        f"data.max_objects={plan.max_objects}",
        f"data.intensity_low={plan.intensity_low}",
        "prompts.corrections=1",
        f"optim.lr={lr_for(arm)}",
        "optim.weight_decay=1e-5",
        "schedule.epochs=2",
        "schedule.decay_epochs=[1]",  # x0.1 after half the steps
        f"run.max_steps={plan.steps}",
        f"run.seed={seed}",
        f"run.device={device}",
        "run.num_workers=0",
        f"checkpoint.every_steps={plan.steps}",
        "logging.progress=false",
        "logging.tensorboard=false",
    ]
    config = load_config(None, ["task=video", *overrides], config_class=VideoTrainConfig)
    return finish_run(run_dir, arm, seed, train_video(config))


def evaluate_all(
    out: Path, adapters: dict[str, Path | None], spec: str, plan: VideoStudyPlan, device: str
) -> None:
    """Every model on one test set (identical degraded clips, prompts and scored frames); records
    already written are read back, so a resumed run computes only what is missing."""
    from garasam.assembly import build_models
    from garasam.video.clips import open_clips
    from garasam.video.evaluate import evaluate_video, plan_video_conditions
    from garasam.video.report import write_video_report

    clips = open_clips(spec)
    conditions = plan_video_conditions("robustseg", None, list(plan.degradations))
    models, _ = build_models(adapters, MODEL_TYPE, None, device, video=True)
    records = evaluate_video(
        models,
        clips,
        conditions,
        list(plan.protocols),
        "robustseg",
        0,
        out / "records",
        intensity_low=plan.intensity_low,
        max_objects=plan.max_objects,
    )
    settings = {
        "data": spec,
        "suite": "robustseg",
        "seed": 0,
        "intensity_low": plan.intensity_low,
        "conditions": [c.folder for c in conditions],
        "protocols": list(plan.protocols),
    }
    write_video_report(out, records, [c.name for c in clips], settings)
