"""The protocol: identical inputs for every model, per-model independence, disk == on the fly."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from garasam.adapters import GaRAConfig, LoRAConfig, inject_adapters
from garasam.data.degradations import get_degradation, seed_for
from garasam.data.images import save_masks
from garasam.data.readers import open_dataset
from garasam.errors import ConfigError
from garasam.eval.conditions import CLEAN_CONDITION, Condition, plan_conditions
from garasam.eval.metrics import average_precision
from garasam.eval.protocol import evaluate
from tests.eval.conftest import DEGRADATIONS, tiny_sam


def run(models, samples, **options):
    options = {"degradations": DEGRADATIONS, "progress": False, **options}
    return evaluate(models, samples, "robustseg", **options)


def numbers(results, model: str) -> dict:
    """Every score of one model: sums and counts per (condition, prompt)."""
    return {key[1:]: (sums.sums, sums.count) for key, sums in results.scores.items() if key[0] == model}


def test_conditions_are_clean_then_suite_order_and_bad_requests_are_refused() -> None:
    conditions = plan_conditions("robustseg", degradations=["fog", "snow"])
    assert conditions == [CLEAN_CONDITION, Condition("snow", 1), Condition("fog", 1)]
    levels = plan_conditions("imagenet-c", [5, 1], ["fog"])
    assert levels == [CLEAN_CONDITION, Condition("fog", 1), Condition("fog", 5)]
    assert len(plan_conditions("imagenet-c")) == 1 + 19 * 5
    with pytest.raises(ConfigError, match="severities"):
        plan_conditions("robustseg", [3])
    with pytest.raises(ConfigError, match="unknown degradation"):
        plan_conditions("robustseg", degradations=["smog"])


def test_scores_cover_every_object_of_every_condition(samples) -> None:
    results = run({"frozen": tiny_sam()}, samples, prompts=["box"])
    objects = sum(len(sample.masks) for sample in samples)
    assert results.num_images == len(samples)
    assert [c.degradation for c in results.conditions] == ["clean", *DEGRADATIONS]
    for condition in results.conditions:
        sums = results.scores[("frozen", condition.degradation, condition.severity, "box")]
        assert sums.count == objects
        means = sums.means()
        assert all(0.0 <= value <= 1.0 for value in means.values())
    clean = results.clear("frozen", "box")["iou"]
    noisy = results.condition_mean("frozen", "box", Condition("gauss_noise", 1))["iou"]
    assert clean != noisy  # the degraded view really reaches the model
    assert results.degrade("frozen", "box")["iou"] == pytest.approx(
        np.mean([results.condition_mean("frozen", "box", Condition(n, 1))["iou"] for n in DEGRADATIONS])
    )


def test_two_models_together_score_exactly_as_each_alone(samples) -> None:
    first, second = tiny_sam(0), tiny_sam(1)
    together = run({"a": first, "b": second}, samples)
    alone_a = run({"a": tiny_sam(0)}, samples)
    alone_b = run({"b": tiny_sam(1)}, samples)
    assert numbers(together, "a") == numbers(alone_a, "a")
    assert numbers(together, "b") == numbers(alone_b, "b")
    assert numbers(together, "a") != numbers(together, "b")  # the two models do differ


def test_zero_initialised_gara_scores_exactly_like_the_frozen_model(samples) -> None:
    frozen = tiny_sam()
    gara = inject_adapters(copy.deepcopy(frozen), GaRAConfig(r_low=4, r_high=16))
    results = run({"frozen": frozen, "gara": gara}, samples)
    assert numbers(results, "gara") == numbers(results, "frozen")
    # gate statistics are recorded for GaRA only: one entry per adapted block and condition
    layers = results.gate_layers("gara")
    assert len(layers) == 6 and results.gate_layers("frozen") == []
    for condition in results.conditions:
        active, high = results.gate_mean("gara", layers[0], condition)
        assert 0 <= active <= 16 and 0.0 <= high <= 1.0
    assert {results.gate_rows_per_image("gara", name) for name in layers} == {1, 4}  # global, windowed


def test_a_trained_adapter_changes_the_scores(samples) -> None:
    frozen = tiny_sam()
    lora = inject_adapters(copy.deepcopy(frozen), LoRAConfig(rank=4))
    with torch.no_grad():
        for name, param in lora.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    results = run({"frozen": frozen, "lora": lora}, samples, prompts=["point"])
    assert numbers(results, "lora") != numbers(results, "frozen")
    assert results.gate_layers("lora") == []  # plain LoRA has no gates


def _write_robustseg(root: Path, samples, conditions: list[str]) -> None:
    """A Robust-Seg folder with lossless PNGs: clear/, masks/, and the on-the-fly degradations on disk."""
    for sample in samples:
        image_id = sample.meta["image_id"]
        masks = np.stack(sample.masks)
        save_masks(root / "masks" / f"{image_id}.npy", masks)
        (root / "clear").mkdir(parents=True, exist_ok=True)
        Image.fromarray(sample.image).save(root / "clear" / f"{image_id}.png")
        images = torch.from_numpy(sample.image).permute(2, 0, 1)[None].contiguous()
        for name in conditions:
            degradation = get_degradation("robustseg", name)
            out, warped = degradation(
                images,
                [seed_for(image_id, name, 1, 0)],
                masks=[torch.from_numpy(masks)] if degradation.geometric else None,
            )
            (root / name).mkdir(exist_ok=True)
            Image.fromarray(out[0].permute(1, 2, 0).numpy()).save(root / name / f"{image_id}.png")
            if degradation.geometric:
                save_masks(root / f"masks_{name}" / f"{image_id}.npy", warped[0].numpy())


def test_reading_degradation_folders_equals_degrading_on_the_fly(samples, tmp_path: Path) -> None:
    _write_robustseg(tmp_path, samples, list(DEGRADATIONS))
    reader = open_dataset(f"robustseg:{tmp_path}")
    model = tiny_sam()
    fly = run({"m": model}, reader, source="fly")
    disk = run({"m": model}, reader, source="disk")
    assert numbers(disk, "m") == numbers(fly, "m")
    assert disk.config["source"] == "disk" and disk.num_images == len(samples)


def test_a_missing_degraded_image_is_reported_and_skipped(samples, tmp_path: Path) -> None:
    _write_robustseg(tmp_path, samples, ["gauss_noise"])
    missing = samples[0].meta["image_id"]
    (tmp_path / "gauss_noise" / f"{missing}.png").unlink()
    results = run(
        {"m": tiny_sam()}, open_dataset(f"robustseg:{tmp_path}"), source="disk", degradations=["gauss_noise"]
    )
    expected = sum(len(s.masks) for s in samples[1:])
    assert results.scores[("m", "gauss_noise", 1, "point")].count == expected
    assert any(missing in problem and "gauss_noise" in problem for problem in results.problems)


def test_examples_keep_predictions_for_the_qualitative_sheet(samples) -> None:
    results = run(
        {"a": tiny_sam()}, samples, examples=2, example_conditions=[Condition("elastic_transform", 1)]
    )
    assert len(results.examples) == 2 * 2  # two images x two prompt kinds
    example = results.examples[0]
    assert example.condition == Condition("elastic_transform", 1)
    assert example.predictions["a"].shape == example.gt.shape
    assert example.degraded.shape == example.clean.shape and not np.array_equal(
        example.degraded, example.clean
    )
    assert 0.0 <= example.iou["a"] <= 1.0


def test_bad_arguments_are_config_errors(samples) -> None:
    with pytest.raises(ConfigError, match="prompts"):
        run({"a": tiny_sam()}, samples, prompts=["scribble"])
    with pytest.raises(ConfigError, match="robustseg reader"):
        run({"a": tiny_sam()}, samples, source="disk")
    with pytest.raises(ConfigError, match="at least one model"):
        run({}, samples)


def test_loader_worker_processes_give_the_same_numbers(samples) -> None:
    model = tiny_sam()
    inline = run({"m": model}, samples, batch_size=2)
    workers = run({"m": model}, samples, batch_size=2, workers=1)
    assert numbers(workers, "m") == numbers(inline, "m")
    assert workers.num_images == inline.num_images == len(samples)


def test_bf16_autocast_scores_close_to_fp32(samples) -> None:
    model = tiny_sam()
    fp32 = run({"m": model}, samples[:1], prompts=["box"], precision="fp32")
    bf16 = run({"m": model}, samples[:1], prompts=["box"], precision="bf16")
    assert bf16.config["precision"] == "bf16" and fp32.config["precision"] == "fp32"
    for condition in fp32.conditions:
        expected = fp32.condition_mean("m", "box", condition)["iou"]
        assert bf16.condition_mean("m", "box", condition)["iou"] == pytest.approx(expected, abs=0.1)


def test_per_object_scores_add_up_to_the_sums_and_name_the_clean_object(samples) -> None:
    """objects.csv and the bootstrap rest on these: one entry per scored object, keyed by the object's
    index in the clean ground truth (also when a geometric degradation drops an object)."""
    results = run({"frozen": tiny_sam()}, samples, prompts=["box", "point"])
    for (model, _, _, prompt), sums in results.scores.items():
        assert len(sums.objects) == sums.count
        for column, metric in enumerate(("iou", "dice", "pixel_acc", "boundary_iou")):
            assert sum(v[column] for v in sums.objects.values()) == pytest.approx(sums.sums[metric])
        clean_keys = set(results.scores[(model, "clean", 0, prompt)].objects)
        assert set(sums.objects) <= clean_keys
    keys = set(results.scores[("frozen", "clean", 0, "box")].objects)
    assert keys == {f"{s.meta['image_id']}/{i}" for s in samples for i in range(len(s.masks))}
    rows = results.object_rows()
    assert len(rows) == sum(s.count for s in results.scores.values())
    assert {r["prompt"] for r in rows} == {"box", "point"} and all(0 <= r["iou"] <= 1 for r in rows)
    # SAM's predicted IoU of every scored mask: the AP's ranking score
    assert all(sums.predicted.keys() == sums.objects.keys() for sums in results.scores.values())
    assert all(isinstance(r["predicted_iou"], float) for r in rows)
    clean = results.scores[("frozen", "clean", 0, "box")]
    keys = list(clean.objects)
    expected = average_precision([clean.objects[k][0] for k in keys], [clean.predicted[k] for k in keys])
    assert results.average_precision("frozen", "box", [CLEAN_CONDITION]) == pytest.approx(expected)
