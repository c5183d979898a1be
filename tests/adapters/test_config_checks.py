"""Hand-edited or foreign adapter configs are refused where they are read, naming the file (issue 13)."""

import json
import math

import pytest
import torch

from garasam.adapters import (
    FullFinetuneConfig,
    GaRAConfig,
    LoRAConfig,
    MoELoRAConfig,
    inject_adapters,
    load_adapters,
    save_adapters,
)
from garasam.adapters.config import adapter_config_from_dict
from garasam.adapters.io import CONFIG_NAME
from garasam.errors import CheckpointError, ConfigError


@pytest.fixture
def saved(tiny_sam, tmp_path):
    """An adapter folder written by save_adapters, and a function that edits its config."""
    inject_adapters(tiny_sam, GaRAConfig(r_low=2, r_high=4))
    folder = save_adapters(tiny_sam, tmp_path / "adapters")

    def edit(change) -> None:
        path = folder / CONFIG_NAME
        meta = json.loads(path.read_text())
        change(meta)
        path.write_text(json.dumps(meta))

    return folder, edit


def _fresh():
    import torch
    from transformers import SamModel

    from garasam.models.registry import sam_config

    torch.manual_seed(0)
    return SamModel(sam_config("tiny")).eval()


def test_invalid_target_regex_names_the_file(saved) -> None:
    folder, edit = saved
    edit(lambda m: m["adapter"].__setitem__("target_modules", "((("))
    with pytest.raises(
        CheckpointError, match=rf"{CONFIG_NAME}: .*target_modules '\(\(\(' is not a valid regular"
    ):
        load_adapters(_fresh(), folder)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(saved, value) -> None:
    folder, edit = saved
    edit(lambda m: m["adapter"].__setitem__("tau", value))
    with pytest.raises(CheckpointError, match=r"GaRAConfig.tau must be a finite number"):
        load_adapters(_fresh(), folder)


def test_unknown_format_version_names_the_supported_ones(saved) -> None:
    folder, edit = saved
    edit(lambda m: m.__setitem__("format_version", 99))
    with pytest.raises(CheckpointError, match=r"format_version 99 is not supported .*\(supported: 1\)"):
        load_adapters(_fresh(), folder)


def test_missing_format_version_is_refused(saved) -> None:
    folder, edit = saved
    edit(lambda m: m.pop("format_version"))
    with pytest.raises(CheckpointError, match="format_version None is not supported"):
        load_adapters(_fresh(), folder)


def test_listed_layers_that_this_model_lacks_are_refused(saved) -> None:
    folder, edit = saved
    edit(lambda m: m.__setitem__("target_modules", ["vision_encoder.layers.0.attn.nothing"]))
    with pytest.raises(CheckpointError, match="target_modules lists 1 layer"):
        load_adapters(_fresh(), folder)


def test_a_refused_folder_leaves_the_model_unchanged(saved) -> None:
    folder, edit = saved
    edit(lambda m: m.__setitem__("target_modules", ["nowhere"]))
    model = _fresh()
    with pytest.raises(CheckpointError):
        load_adapters(model, folder)
    inject_adapters(model, LoRAConfig(rank=2))  # still a plain model: injection works


def test_regex_matching_no_module_is_refused(saved) -> None:
    folder, edit = saved
    edit(lambda m: m["adapter"].__setitem__("target_modules", "no_such_layer$"))
    with pytest.raises(CheckpointError, match="matches no module"):
        load_adapters(_fresh(), folder)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"adapter_type": "lora", "scale": math.nan}, "LoRAConfig.scale must be a finite number"),
        ({"adapter_type": "lora", "rank": True}, "LoRAConfig.rank must be an integer from 1 to 65536"),
        (
            {"adapter_type": "gara", "space_gate_layers": 10**12},
            "space_gate_layers must be an integer from 1 to 64",
        ),
        ({"adapter_type": "gara", "r_high": 10**9}, "r_high must be an integer from 1 to 65536"),
        ({"adapter_type": "moe_lora", "expert_ranks": [16, "x"]}, "expert_ranks needs two or more ranks"),
        ({"adapter_type": "moe_lora", "expert_ranks": 16}, "expert_ranks needs two or more ranks"),
        ({"adapter_type": "moe_lora", "tau": 0.0}, "MoELoRAConfig.tau must be positive"),
        ({"adapter_type": "moe_lora", "tau": math.nan}, "MoELoRAConfig.tau must be a finite number"),
        ({"adapter_type": "gara", "target_modules": 3}, "target_modules must be a regular expression"),
        ({"adapter_type": "full_finetune", "trainable": "[a-"}, "trainable '\\[a-' is not a valid"),
        ({"adapter_type": "gara", "r_mid": [64, 32]}, "must grow strictly from r_low through r_mid"),
        ({"adapter_type": "gara", "r_mid": [8]}, "must grow strictly from r_low through r_mid"),
        ({"adapter_type": "gara", "r_mid": [300]}, "must grow strictly from r_low through r_mid"),
        ({"adapter_type": "gara", "r_mid": 64}, "r_mid must be a list of ranks"),
        ({"adapter_type": "gara", "r_mid": [0]}, "r_mid must be a list of ranks"),
        ({"adapter_type": "gara", "r_mid": [64], "gating": "unified"}, "'unified' has one rank space"),
        ({"adapter_type": "gara", "gate_pooling": "some"}, "gate_pooling must be one of valid, all"),
        ({"adapter_type": "moe_lora", "gate_pooling": None}, "gate_pooling must be one of valid, all"),
    ],
)
def test_every_config_class_checks_its_numbers_and_patterns(data, message) -> None:
    with pytest.raises(ConfigError, match=message):
        adapter_config_from_dict(data)


def test_valid_configs_still_build() -> None:
    for config in (
        GaRAConfig(),
        GaRAConfig(r_mid=(64, 128)),
        LoRAConfig(),
        MoELoRAConfig(),
        FullFinetuneConfig(),
    ):
        assert adapter_config_from_dict(config.to_dict()) == config


@pytest.mark.parametrize("ranks", [{"r_low": 300, "r_high": 16}, {"r_low": 16, "r_high": 16}])
def test_the_low_space_is_smaller_than_the_high_one(ranks) -> None:
    """Issue 29, item 10: r_low > r_high trained (exit 0); the order was checked only with r_mid."""
    with pytest.raises(ConfigError, match="must grow strictly from r_low"):
        GaRAConfig(**ranks)
    GaRAConfig(gating="unified", r_high=16)  # one space: r_low plays no part


def test_a_training_recipe_with_the_spaces_swapped_is_refused() -> None:
    from garasam.train import load_config

    with pytest.raises(ConfigError, match="must grow strictly"):
        load_config(None, ["adapter.r_low=300", "adapter.r_high=16"])


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, "2", True])
def test_gate_summary_takes_a_positive_number_of_images(batch_size) -> None:
    """Issue 29: batch_size=0 divided by zero (or returned nothing) instead of saying so."""
    from garasam.adapters import GaRAConfig, gate_summary, inject_adapters
    from garasam.models import build_sam

    model = inject_adapters(build_sam("tiny", pretrained=False), GaRAConfig(r_low=2, r_high=4))
    model.get_image_embeddings(torch.zeros(1, 3, 256, 256))
    with pytest.raises(ConfigError, match="batch_size must be a positive number of images"):
        gate_summary(model, batch_size)
    assert len(gate_summary(model, 1)) == 6  # one per block of the tiny SAM


def test_the_public_functions_name_a_wrong_model_or_type() -> None:
    from garasam.adapters import trainable_parameters
    from garasam.models import build_sam

    with pytest.raises(ConfigError, match="expected a model"):
        trainable_parameters("runs/gara/adapters")
    with pytest.raises(ConfigError, match="unknown SAM model type 'vit_z'"):
        build_sam("vit_z")
