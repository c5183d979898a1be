"""Video training: a run on synthetic clips trains the adapters of every preset through the encoder
and the memory, writes checkpoints and adapters that load into video mode, resumes exactly, and
refuses recipes it cannot run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from garasam.adapters import load_adapters
from garasam.adapters.inspect import adapter_state_dict
from garasam.cli import main
from garasam.data.synthetic_video import write_clips
from garasam.errors import ConfigError
from garasam.models import build_sam
from garasam.train.config import load_config
from garasam.video.clips import open_clips
from garasam.video.train_config import VideoTrainConfig
from garasam.video.training import sample_clip, train_video

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "tiny_gara_sam2.1_video.yaml"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Clips, and a random sam2.1_mini whose object-score head says "present" (random weights say
    "absent", which makes every mask -1024 and every gradient zero; trained weights do neither)."""
    root = tmp_path_factory.mktemp("video-train")
    write_clips(root / "clips", num=3, size=(64, 64), length=5, family="target")
    torch.manual_seed(0)
    model = build_sam("sam2.1_mini", video=True)
    with torch.no_grad():
        model.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(20.0)
    model.save_pretrained(root / "sam2.1_mini")
    return root / "clips", root / "sam2.1_mini"


def _config(setup: tuple[Path, Path], out: Path, *overrides: str) -> VideoTrainConfig:
    clips, checkpoint = setup
    base = [
        f"data.train=[frames:{clips}]",
        f"model.checkpoint={checkpoint}",
        "model.model_type=sam2.1_mini",
        f"output_dir={out}",
        "run.max_steps=4",
        "checkpoint.every_steps=2",
        "logging.progress=false",
        "data.frames=3",
    ]
    return load_config(RECIPE, [*base, *overrides], config_class=VideoTrainConfig)


@pytest.mark.parametrize("preset", ["encoder", "memory", "encoder+memory"])
def test_each_preset_trains_and_its_adapters_load_into_video_mode(setup, tmp_path: Path, preset: str) -> None:
    result = train_video(_config(setup, tmp_path / "run", f"adapter.target_modules={preset}"))
    assert result.status == "completed" and result.steps == 4
    trained = adapter_state_dict(
        load_adapters(build_sam("sam2.1_mini", setup[1], video=True), result.adapters_dir)
    )
    moved = [k for k, v in trained.items() if "lora_B" in k and v.abs().sum() > 0]
    assert moved  # B starts at zero: the loss reached the adapters
    assert all(("memory_attention" in k) == (preset == "memory") or preset == "encoder+memory" for k in moved)
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "step_00000002",
        "step_00000004",
    ]


def test_a_resumed_run_matches_an_uninterrupted_one(setup, tmp_path: Path) -> None:
    straight = train_video(_config(setup, tmp_path / "a"))
    first = train_video(_config(setup, tmp_path / "b", "run.max_steps=2"))
    assert first.steps == 2
    resumed = train_video(_config(setup, tmp_path / "b", "resume=true"))
    assert resumed.steps == 4
    a = adapter_state_dict(
        load_adapters(build_sam("sam2.1_mini", setup[1], video=True), straight.adapters_dir)
    )
    b = adapter_state_dict(
        load_adapters(build_sam("sam2.1_mini", setup[1], video=True), resumed.adapters_dir)
    )
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_clips_are_sampled_from_the_seed_and_step_alone(setup) -> None:
    clips = open_clips(f"frames:{setup[0]}")
    config = _config(setup, Path("unused"), "data.degradation_weights={elastic_transform: 1}")
    one = sample_clip(clips, config, np.random.default_rng([0, 3, 0]))
    two = sample_clip(clips, config, np.random.default_rng([0, 3, 0]))
    assert one.name == two.name and all(
        np.array_equal(a, b) for a, b in zip(one.frames, two.frames, strict=True)
    )
    assert one.degradation == "elastic_transform" and len(one.frames) == 3
    assert 1 <= len(one.prompts) <= 2 and set(one.prompts) <= set(one.annotations[0])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.model_type=tiny", "video training needs SAM 2.1"),
        ("data.frames=0", "data.frames"),
        ("prompts.kinds=[scribble]", "prompts.kinds"),
        ("data.intensity_low=1.5", "data.intensity_low"),
        ("validation.data=frames:x", "no held-out validation yet"),
    ],
)
def test_bad_recipes_are_named(setup, tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config(setup, tmp_path / "run", override)


def test_the_command_trains_from_a_video_recipe(setup, tmp_path: Path, capsys) -> None:
    clips, checkpoint = setup
    argv = ["train", "--config", str(RECIPE), "--data", f"frames:{clips}", "--checkpoint", str(checkpoint)]
    argv += ["--model-type", "sam2.1_mini"]
    argv += ["--out", str(tmp_path / "run"), "--max-steps", "2", "logging.progress=false", "data.frames=3"]
    assert main(argv) == 0
    assert "train (video): 2 steps" in capsys.readouterr().out
    assert (tmp_path / "run" / "adapters" / "adapter_config.json").is_file()
    assert main([*argv[:-4], "--out", str(tmp_path / "run2"), "task=video", "data.frames=0"]) == 2


@pytest.mark.parametrize(
    ("recipe", "preset"),
    [
        ("gara_sam2.1_video_encoder.yaml", "encoder"),
        ("gara_sam2.1_video_memory.yaml", "memory"),
        ("gara_sam2.1_video_encoder_memory.yaml", "encoder+memory"),
        ("tiny_gara_sam2.1_video.yaml", "encoder+memory"),  # on the bundled sam2.1_tiny
    ],
)
def test_shipped_video_recipes(recipe: str, preset: str) -> None:
    from garasam.adapters.config import VIDEO_PRESETS

    config = load_config(RECIPE.parent / recipe, config_class=VideoTrainConfig)
    assert config.task == "video" and config.adapter.target_modules == VIDEO_PRESETS[preset]
    assert config.data.frames == (4 if recipe.startswith("tiny") else 8)


def test_every_video_recipe_is_tested() -> None:
    from garasam.train.config import read_recipe

    assert len([p for p in RECIPE.parent.glob("*.yaml") if read_recipe(p).get("task") == "video"]) == 4


@pytest.mark.slow
def test_two_processes_train_with_averaged_gradients(setup, tmp_path: Path) -> None:
    """torchrun with 2 CPU processes (gloo): each tracks its own clip, the adapters' gradients are
    averaged, rank 0 writes; the run completes and records its world size."""
    import json

    from tests.launch import torchrun_garasam

    clips, checkpoint = setup
    torchrun_garasam(
        "train",
        "--config",
        str(RECIPE),
        "--data",
        f"frames:{clips}",
        "--checkpoint",
        str(checkpoint),
        "--model-type",
        "sam2.1_mini",
        "--out",
        str(tmp_path / "ddp"),
        "--max-steps",
        "2",
        "logging.progress=false",
        "data.frames=3",
    )
    records = [json.loads(line) for line in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert next(r for r in records if r["event"] == "start")["world_size"] == 2
    assert (tmp_path / "ddp" / "adapters" / "adapter_model.safetensors").is_file()
    assert not list((tmp_path / "ddp").glob("**/*.tmp"))


def test_the_adapters_train_while_the_frozen_model_stays_in_eval(setup, tmp_path: Path, monkeypatch) -> None:
    """GaRA's gates sample only in training mode: the trainer's adapters must be in it when a clip is
    tracked (the tracker puts its model in eval mode), and the frozen modules must not."""
    from garasam.adapters import adapter_layers
    from garasam.video import training

    seen = []
    real = training.clip_loss

    def spy(predictor, *args, **kwargs):
        layers = adapter_layers(predictor.model).values()
        seen.append((all(layer.training for layer in layers), predictor.model.memory_attention.training))
        return real(predictor, *args, **kwargs)

    monkeypatch.setattr(training, "clip_loss", spy)
    train_video(_config(setup, tmp_path / "run", "run.max_steps=1"))
    assert seen == [(True, False)]


def test_a_geometric_degradation_warps_clips_whose_objects_leave_the_picture(setup, tmp_path: Path) -> None:
    """Object 2 is on frame 0 only (it left the picture): warping the clip (elastic) keeps every
    frame's own objects, object 2 absent from frame 1 on, instead of failing on the missing mask
    (found by the first run of `garasam demo --video`)."""
    from PIL import Image

    from garasam.data.labels import write_label_png

    clip = tmp_path / "clips" / "leaving"
    rng = np.random.default_rng(0)
    for t in range(3):
        (clip / "frames").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(
            clip / "frames" / f"{t:05d}.jpg"
        )
        labels = np.zeros((48, 64), np.uint8)
        labels[10:30, 5 + t : 25 + t] = 1
        if t == 0:
            labels[30:44, 40:60] = 2
        write_label_png(clip / "masks" / f"{t:05d}.png", labels)
    config = _config(
        (tmp_path / "clips", setup[1]),
        Path("unused"),
        "data.degradation_weights={elastic_transform: 1}",
        "data.max_objects=2",
    )
    for draw in range(4):
        sample = sample_clip(open_clips(f"frames:{tmp_path / 'clips'}"), config, np.random.default_rng(draw))
        assert sample.degradation == "elastic_transform" and set(sample.annotations[0]) == {1, 2}
        assert all(set(sample.annotations[f]) == {1} for f in (1, 2))
