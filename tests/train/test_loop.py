"""The training loop on the tiny SAM: learning, frozen base, gradients, failures, output folder rules."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from garasam.adapters import adapter_state_dict, load_adapters
from garasam.errors import CheckpointError, ConfigError, DataError
from garasam.fast.encoder import FastSamVisionEncoder
from garasam.models import build_sam, save_sam
from garasam.train import distributed, losses, train
from garasam.train.checkpoint import list_checkpoints, read_best
from garasam.train.data import to_device
from garasam.train.loop import Trainer, TrainingDiverged
from garasam.train.monitor import read_log
from garasam.train.step import PromptedSam, forward_backward

CPU = distributed.DistContext(0, 0, 1, torch.device("cpu"), owns_group=False)


def _events(run: Path, kind: str) -> list[dict]:
    return [r for r in read_log(run / "log.jsonl") if r["event"] == kind]


def test_loss_decreases_on_synthetic_scenes(make_config, tmp_path: Path) -> None:
    config = make_config(
        "run.max_steps=16",
        "optim.lr=1e-3",
        "schedule.decay_epochs=[]",
        "data.degradation_weights={clean: 1}",
        "prompts.p_box=1",
        "prompts.box_jitter=0",
        "logging.every_steps=4",
    )
    result = train(config)
    losses_logged = [r["loss"] for r in _events(tmp_path / "run", "train")]
    assert result.status == "completed" and result.steps == 16 and len(losses_logged) == 4
    assert losses_logged[-1] < losses_logged[0] - 0.05, losses_logged


def test_only_adapters_and_gates_change(make_config) -> None:
    trainer = Trainer(make_config("run.max_steps=3"), CPU)
    before = {k: v.clone() for k, v in trainer.sam.state_dict().items()}
    adapter_keys = set(adapter_state_dict(trainer.sam))
    trainer.run()
    after = trainer.sam.state_dict()
    for key, value in before.items():
        if key in adapter_keys:
            continue
        assert torch.equal(after[key], value), f"frozen SAM weight {key} changed"
    changed = {k for k in adapter_keys if not torch.equal(after[k], before[k])}
    assert any(".lora_B" in k for k in changed) and any("gate" in k for k in changed)
    assert {p.requires_grad for n, p in trainer.sam.named_parameters() if n in adapter_keys} == {True}


@pytest.mark.parametrize(
    "adapter",
    [
        ["adapter.r_high=32"],
        ["adapter.r_high=32", "adapter.gating=unified"],
        ["adapter.r_high=32", "adapter.gating=space_only"],
        ["adapter.r_high=32", "adapter.gating=random"],
        ["adapter.adapter_type=lora", "adapter.rank=4"],
        ["adapter.adapter_type=moe_lora", "adapter.expert_ranks=[2, 4]"],
    ],
)
def test_every_trainable_parameter_gets_a_gradient(make_config, adapter: list[str]) -> None:
    """Why DDP runs with find_unused_parameters=False: hard gates mask components, never detach them."""
    trainer = Trainer(make_config(*adapter), CPU)
    batch = next(iter(trainer.loader))
    trainer.sam.train()
    device_batch = to_device(batch, trainer.transform, "single_point", CPU.device)
    forward_backward(PromptedSam(trainer.sam), device_batch, trainer.weights, trainer.autocast, CPU)
    missing = [n for n, p in trainer.sam.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    assert all(p.grad is None for p in trainer.sam.parameters() if not p.requires_grad)


def test_saved_adapters_load_for_inference(make_config, tmp_path: Path, tiny_checkpoint: Path) -> None:
    result = train(make_config("run.max_steps=2"))
    assert result.adapters_dir == tmp_path / "run" / "adapters"
    assert result.best_adapters_dir is None and not (tmp_path / "run" / "best").exists()  # no validation
    # what they were trained on, for evaluations to check against: the six scenes, all trained on
    record = json.loads((result.adapters_dir / "training_data.json").read_text())
    assert (
        record["images"] == 6
        and len(set(record["fingerprints"])) == 6
        and record["specs"][0].startswith("robustseg:")
    )
    model = load_adapters(build_sam("tiny", tiny_checkpoint), result.adapters_dir)
    saved = load_file(str(result.adapters_dir / "adapter_model.safetensors"))
    last = load_file(
        str(list_checkpoints(tmp_path / "run")[-1][1] / "adapters" / "adapter_model.safetensors")
    )
    state = adapter_state_dict(model)
    assert saved.keys() == state.keys() == last.keys()
    assert all(torch.equal(state[k], saved[k]) and torch.equal(saved[k], last[k]) for k in saved)


def test_init_adapters_continues_from_trained_adapters(make_config, tmp_path: Path) -> None:
    """`--init-adapters` (the paper's Table a4 fine-tuning): the run starts from those weights."""
    first = train(make_config("run.max_steps=2", output=tmp_path / "first"))
    saved = load_file(str(first.adapters_dir / "adapter_model.safetensors"))
    trainer = Trainer(
        make_config(f"model.init_adapters={first.adapters_dir}", output=tmp_path / "second"), CPU
    )
    state = adapter_state_dict(trainer.sam)
    assert state.keys() == saved.keys() and all(torch.equal(state[k], saved[k]) for k in saved)
    assert trainer.params and all(p.requires_grad for p in trainer.params)
    assert sum(p.numel() for p in trainer.params) == sum(v.numel() for v in saved.values())


def test_init_adapters_of_another_recipe_are_refused_by_key(make_config, tmp_path: Path) -> None:
    first = train(make_config("run.max_steps=1", output=tmp_path / "first"))
    config = make_config(
        f"model.init_adapters={first.adapters_dir}", "adapter.r_high=64", output=tmp_path / "second"
    )
    with pytest.raises(
        ConfigError, match=r"differ from the run's adapter section \(r_high: saved 256, run 64\)"
    ):
        Trainer(config, CPU)
    assert not (tmp_path / "second" / "checkpoints").exists()


def test_init_adapters_missing_or_for_another_backbone_are_refused(make_config, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nowhere"):
        Trainer(make_config(f"model.init_adapters={tmp_path / 'nowhere'}"), CPU)
    first = train(make_config("run.max_steps=1", output=tmp_path / "first"))
    meta_path = first.adapters_dir / "adapter_config.json"
    meta = json.loads(meta_path.read_text())
    meta["backbone"]["hidden_size"] = 768  # as if trained on ViT-B
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not fit this model: encoder width 768 in the file, 160"):
        Trainer(make_config(f"model.init_adapters={first.adapters_dir}", output=tmp_path / "b"), CPU)


def _nan_after(monkeypatch: pytest.MonkeyPatch, bad_calls: set[int]) -> None:
    """Make the loss NaN for the given mask_losses calls (counted from 0)."""
    original = losses.mask_losses
    calls = {"n": 0}

    def patched(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        out = original(*args, **kwargs)
        index, calls["n"] = calls["n"], calls["n"] + 1
        if index in bad_calls or -1 in bad_calls:
            nan = out.per_object * float("nan")
            return dataclasses.replace(out, per_object=nan, total=nan.mean())
        return out

    monkeypatch.setattr(losses, "mask_losses", patched)


def test_nan_steps_are_skipped_and_counted(
    make_config, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = make_config("run.max_steps=4", "prompts.p_box=1")  # boxes only: one mask_losses call per step
    trainer = Trainer(config, CPU)
    _nan_after(monkeypatch, {1, 2})
    snapshots = []
    original_step = trainer._train_step

    def recording_step(*args):  # noqa: ANN002, ANN202
        out = original_step(*args)
        snapshots.append({k: v.clone() for k, v in adapter_state_dict(trainer.sam).items()})
        return out

    trainer._train_step = recording_step
    result = trainer.run()
    assert result.status == "completed" and result.nonfinite_steps == 2
    assert [e["step"] for e in _events(tmp_path / "run", "nonfinite")] == [2, 3]
    unchanged = all(torch.equal(snapshots[0][k], snapshots[2][k]) for k in snapshots[0])
    assert unchanged, "a NaN step must not update the adapters"
    assert any(not torch.equal(snapshots[2][k], snapshots[3][k]) for k in snapshots[0])


def test_consecutive_nan_steps_stop_the_run_with_advice(make_config, monkeypatch: pytest.MonkeyPatch) -> None:
    _nan_after(monkeypatch, {-1})
    with pytest.raises(TrainingDiverged, match=r"3 consecutive steps.*lower learning rate.*precision=fp32"):
        train(make_config("run.max_steps=10", "run.max_nonfinite_steps=3"))


def test_output_folder_of_another_run_is_protected(make_config, tmp_path: Path) -> None:
    train(make_config("run.max_steps=1"))
    with pytest.raises(ConfigError, match=r"holds another run.*optim\.lr: 0\.001 -> 0\.002.*--overwrite"):
        train(make_config("run.max_steps=1", "optim.lr=2e-3"))
    with pytest.raises(ConfigError, match=r"already holds checkpoints of this run.*--resume"):
        train(make_config("run.max_steps=1"))
    result = train(make_config("run.max_steps=1", "optim.lr=2e-3", "overwrite=true"))
    assert result.status == "completed"
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(make_config("run.max_steps=1", "resume=true", output=tmp_path / "empty"))
    fresh = train(make_config("run.max_steps=1", "resume=auto", output=tmp_path / "auto"))
    assert fresh.steps == 1


def test_unreadable_samples_are_skipped_and_logged(make_config, scenes: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(scenes.split(":", 1)[1], root)
    broken = sorted((root / "clear").iterdir())[0]
    broken.write_bytes(b"not a jpeg")
    result = train(make_config("run.max_steps=3", f"data.train=['robustseg:{root}']"))
    assert result.status == "completed" and result.bad_samples >= 1
    assert any(broken.name in e["problem"] for e in _events(tmp_path / "run", "bad_sample"))
    with pytest.raises(DataError, match=broken.name):
        train(
            make_config(
                "run.max_steps=3",
                f"data.train=['robustseg:{root}']",
                "data.strict=true",
                output=tmp_path / "strict",
            )
        )


def test_validation_best_checkpoint_and_tensorboard(make_config, tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = make_config(
        "run.max_steps=4",
        "validation.fraction=0.34",
        "validation.every_steps=2",
        "validation.max_images=2",
        "validation.degradations=[clean, fog, elastic_transform]",
        "checkpoint.every_steps=1",
        "checkpoint.keep_last=1",
        "logging.tensorboard=true",
    )
    result = train(config)
    run = tmp_path / "run"
    val = _events(run, "val")
    assert [e["step"] for e in val] == [2, 4]
    assert set(val[0]["iou"]) == {"clean", "fog", "elastic_transform", "mean", "degraded"}
    assert all(0.0 <= v <= 1.0 for v in val[0]["iou"].values())
    best = read_best(run)
    assert best == result.best and best["step"] in (2, 4)
    kept = [step for step, _ in list_checkpoints(run)]
    assert kept == sorted({best["step"], 4})  # the last one plus the best one
    # issue 19, item 6: the best step's adapters beside the final ones, named in the result
    assert result.best_adapters_dir == run / "best"
    best_checkpoint = dict(list_checkpoints(run))[best["step"]] / "adapters" / "adapter_model.safetensors"
    assert (run / "best" / "adapter_model.safetensors").read_bytes() == best_checkpoint.read_bytes()
    assert json.loads((run / "best" / "adapter_config.json").read_text())["training_step"] == best["step"]
    assert (run / "best" / "training_data.json").is_file()
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "train/loss",
        "train/lr",
        "val/iou/clean",
        "val/iou/mean",
        "gates/mean_active_rank/layers.0",
    } <= tags


def test_a_batch_without_objects_still_reaches_every_adapter(make_config) -> None:
    """A process whose objects were all warped away must still produce (zero) gradients for DDP."""
    trainer = Trainer(make_config(), CPU)
    batch = next(iter(trainer.loader))
    trainer.sam.train()
    device_batch = to_device(batch, trainer.transform, "single_point", CPU.device)
    device_batch.groups, device_batch.num_objects = [], 0
    sums = forward_backward(PromptedSam(trainer.sam), device_batch, trainer.weights, trainer.autocast, CPU)
    assert sums["loss"].item() == 0.0
    grads = {n: p.grad for n, p in trainer.sam.named_parameters() if p.requires_grad}
    assert not [n for n, g in grads.items() if g is None or g.any()]


@pytest.mark.parametrize("checkpointing", [False, True])
def test_fast_encoder_trains_like_the_reference(make_config, tmp_path: Path, checkpointing: bool) -> None:
    """`run.fast_encoder` (on by default for CUDA) changes kernels, not the step: same losses and gradients."""
    results = []
    for fast in ("false", "true"):
        trainer = Trainer(
            make_config(
                f"run.fast_encoder={fast}",
                f"run.activation_checkpointing={str(checkpointing).lower()}",
                output=tmp_path / f"fast_{fast}",
            ),
            CPU,
        )
        assert isinstance(trainer.sam.vision_encoder, FastSamVisionEncoder) == (fast == "true")
        batch = next(iter(trainer.loader))
        trainer.sam.train()
        device_batch = to_device(batch, trainer.transform, "single_point", CPU.device)
        torch.manual_seed(7)  # the same Gumbel noise for both encoders
        sums = forward_backward(
            PromptedSam(trainer.sam), device_batch, trainer.weights, trainer.autocast, CPU
        )
        grads = {n: p.grad for n, p in trainer.sam.named_parameters() if p.requires_grad}
        results.append((sums["loss"], grads))
    (ref_loss, ref_grads), (fast_loss, fast_grads) = results
    torch.testing.assert_close(fast_loss, ref_loss, rtol=1e-4, atol=1e-6)
    assert ref_grads.keys() == fast_grads.keys() and all(g is not None for g in fast_grads.values())
    for name, grad in ref_grads.items():
        assert (fast_grads[name] - grad).norm() <= 1e-3 * grad.norm() + 1e-9, name


@pytest.mark.parametrize("fast", [False, True])
def test_activation_checkpointing_recomputes_the_encoder_blocks(fast: bool) -> None:
    """`run.activation_checkpointing` keeps no block's activations: each block runs again in backward,
    on the fast encoder too (its blocks subclass transformers' checkpointing layer)."""
    from garasam.adapters import GaRAConfig, inject_adapters
    from garasam.fast.encoder import optimize_sam
    from garasam.train.setup import enable_activation_checkpointing

    runs = []
    for checkpointing in (False, True):
        sam = inject_adapters(build_sam("tiny"), GaRAConfig())
        if fast:
            optimize_sam(sam, dtype=torch.float32)
        if checkpointing:
            enable_activation_checkpointing(sam)
        sam.train()
        calls = []
        for layer in sam.vision_encoder.layers:  # a pre-hook: recomputation may stop before a block ends
            layer.layer_norm1.register_forward_pre_hook(lambda *_, calls=calls: calls.append(1))
        sam.vision_encoder(torch.randn(1, 3, 256, 256)).last_hidden_state.sum().backward()
        runs.append(len(calls))
    blocks = len(sam.vision_encoder.layers)
    assert runs == [blocks, 2 * blocks]


def test_fast_encoder_is_off_on_cpu_by_default(make_config) -> None:
    trainer = Trainer(make_config(), CPU)
    assert not isinstance(trainer.sam.vision_encoder, FastSamVisionEncoder)


@pytest.mark.parametrize("model_type", ["hq_tiny", "robust_tiny", "sam2.1_mini"])
def test_gara_trains_on_the_other_families(make_config, tmp_path: Path, model_type: str) -> None:
    """Issues 15 and 16: GaRA on SAM-HQ, RobustSAM and SAM 2.1 trains, saves and loads like on SAM; the
    frozen rest (HQ token, robust blocks and their batch norms, SAM 2's decoder) does not move."""
    torch.manual_seed(0)
    checkpoint = tmp_path / f"{model_type}.safetensors"
    save_sam(build_sam(model_type), checkpoint)
    trainer = Trainer(
        make_config(f"model.model_type={model_type}", f"model.checkpoint='{checkpoint}'", "run.max_steps=3"),
        CPU,
    )
    before = {k: v.clone() for k, v in trainer.sam.state_dict().items()}
    adapter_keys = set(adapter_state_dict(trainer.sam))
    result = trainer.run()
    after = trainer.sam.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items() if k not in adapter_keys)
    assert any(not torch.equal(after[k], before[k]) for k in adapter_keys if ".lora_B" in k)
    recorded = json.loads((result.adapters_dir / "adapter_config.json").read_text())["backbone"]
    assert recorded["model_type"] == model_type
    model = load_adapters(build_sam(model_type, checkpoint), result.adapters_dir)
    state = adapter_state_dict(model)
    assert all(torch.equal(state[k], after[k]) for k in state)
