"""Training configs: shipped recipes, typed sections, overrides, the run identity, the CLI flags."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from pydantic import BaseModel

from garasam.adapters import GaRAConfig, LoRAConfig, MoELoRAConfig
from garasam.cli import main as cli_main
from garasam.commands import train as cmd
from garasam.errors import ConfigError
from garasam.train.config import TrainConfig, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_paper_recipe_for_vit_b() -> None:
    config = load_config(CONFIGS / "gara_vit_b.yaml")
    assert config.model.model_type == "vit_b"
    assert (config.optim.lr, config.optim.weight_decay, config.run.batch_size) == (1e-4, 1e-5, 8)
    assert (config.schedule.epochs, config.schedule.decay_epochs, config.schedule.gamma) == (20, [10.0], 0.1)
    assert config.optim.grad_clip == 1.0
    assert (config.loss.focal_weight, config.loss.dice_weight) == (20.0, 1.0)
    adapter = config.adapter_config()
    assert isinstance(adapter, GaRAConfig)
    assert (adapter.r_low, adapter.r_high, adapter.tau, adapter.gating) == (16, 256, 0.5, "gated")


@pytest.mark.parametrize(
    ("recipe", "kind", "check"),
    [
        ("gara_vit_l.yaml", GaRAConfig, lambda c, a: c.optim.lr == 1e-5 and c.model.model_type == "vit_l"),
        ("lora_r16_vit_b.yaml", LoRAConfig, lambda c, a: a.rank == 16),
        ("lora_r128_vit_b.yaml", LoRAConfig, lambda c, a: a.rank == 128),
        ("lora_r256_vit_b.yaml", LoRAConfig, lambda c, a: a.rank == 256),
        ("moe_lora_vit_b.yaml", MoELoRAConfig, lambda c, a: a.expert_ranks == (2, 16, 128, 256)),
        ("gara_unified_vit_b.yaml", GaRAConfig, lambda c, a: a.gating == "unified"),
        ("gara_space_only_vit_b.yaml", GaRAConfig, lambda c, a: a.gating == "space_only"),
        ("gara_random_vit_b.yaml", GaRAConfig, lambda c, a: a.gating == "random"),
        ("tiny_gara.yaml", GaRAConfig, lambda c, a: c.model.model_type == "tiny" and c.run.num_workers == 0),
        ("tiny_lora_r16.yaml", LoRAConfig, lambda c, a: a.rank == 16 and c.model.model_type == "tiny"),
        ("tiny_lora_r256.yaml", LoRAConfig, lambda c, a: a.rank == 256 and c.model.model_type == "tiny"),
        ("gara_hq_vit_b.yaml", GaRAConfig, lambda c, a: c.model.model_type == "hq_vit_b" and a.r_high == 256),
        (
            "tiny_gara_hq.yaml",
            GaRAConfig,
            lambda c, a: c.model.model_type == "hq_tiny" and c.run.num_workers == 0,
        ),
    ],
)
def test_shipped_recipes(recipe: str, kind: type, check) -> None:  # noqa: ANN001
    config = load_config(CONFIGS / recipe)
    adapter = config.adapter_config()
    assert isinstance(adapter, kind)
    assert check(config, adapter)


def test_every_shipped_recipe_is_tested() -> None:
    """The image recipes here; the video ones (`task: video`) in tests/video/test_training.py."""
    from garasam.train.config import read_recipe

    image = [p for p in CONFIGS.glob("*.yaml") if read_recipe(p).get("task") != "video"]
    assert len(image) == 16


def test_a_recipe_inherits_from_its_base_and_changes_only_what_it_names(tmp_path: Path) -> None:
    (tmp_path / "parent.yaml").write_text(
        "model: {model_type: tiny}\nadapter: {adapter_type: gara, r_high: 32}\noptim: {lr: 0.5, weight_decay: 0.25}\n"
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "child.yaml").write_text(
        "base: ../parent.yaml\noptim: {lr: 0.125}\nadapter: {tau: 2.0}\n"
    )
    (tmp_path / "other.yaml").write_text("base: parent.yaml\nadapter: {adapter_type: lora, rank: 4}\n")
    (tmp_path / "third.yaml").write_text("base: other.yaml\nadapter: {scale: 0.5}\n")
    child = load_config(tmp_path / "sub" / "child.yaml")
    assert (child.optim.lr, child.optim.weight_decay, child.model.model_type) == (0.125, 0.25, "tiny")
    adapter = child.adapter_config()
    assert isinstance(adapter, GaRAConfig) and (adapter.r_high, adapter.tau) == (32, 2.0)
    other = load_config(tmp_path / "other.yaml")  # another adapter type: the base's keys do not apply
    assert isinstance(other.adapter_config(), LoRAConfig) and other.adapter_config().rank == 4
    third = load_config(tmp_path / "third.yaml").adapter_config()  # no adapter_type: the base's, kept
    assert isinstance(third, LoRAConfig) and (third.rank, third.scale) == (4, 0.5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("base: missing.yaml\n", r"missing.yaml \(the base of"),
        ("base: a.yaml\n", "leads back to itself"),
        ("base: [x]\n", "base: must be the path of another recipe"),
    ],
)
def test_bad_base_keys_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "a.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "a.yaml")


def test_typo_in_a_recipe_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("optim:\n  lrr: 1.0e-3\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml: unknown key 'optim\.lrr'.*valid keys here: lr"):
        load_config(path)


def test_wrong_type_in_an_override_names_the_override_and_the_key() -> None:
    with pytest.raises(ConfigError, match=r"override 'run\.batch_size=eight': run\.batch_size: .*integer"):
        load_config(CONFIGS / "tiny_gara.yaml", ["run.batch_size=eight"])
    with pytest.raises(ConfigError, match=r"override 'optim\.lr=fast': optim\.lr"):
        load_config(None, ["optim.lr=fast"])


def test_unknown_override_key_and_bad_adapter_values() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'optim\.learning_rate'"):
        load_config(None, ["optim.learning_rate=1e-3"])
    with pytest.raises(ConfigError, match=r"unknown gara adapter key 'r_lw'"):
        load_config(None, ["adapter.r_lw=8"])
    with pytest.raises(ConfigError, match=r"adapter: tau: Input should be a valid number"):
        load_config(None, ["adapter.tau=hot"])
    with pytest.raises(ConfigError, match=r"unknown degradation 'fogg'"):
        load_config(None, ["data.degradation_weights={fogg: 1}"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(None, ["optim.lr"])


def test_override_values_are_yaml() -> None:
    config = load_config(
        CONFIGS / "tiny_gara.yaml",
        [
            "optim.lr=1e-3",
            "schedule.decay_epochs=[5, 8]",
            "adapter.r_high=64",
            "resume=auto",
            "optim.grad_clip=null",
        ],
    )
    assert config.optim.lr == 1e-3  # PyYAML reads 1e-3 as a string; the typed field converts it
    assert config.schedule.decay_epochs == [5.0, 8.0]
    assert config.adapter_config().r_high == 64 and config.adapter_config().r_low == 16
    assert config.resume == "auto" and config.optim.grad_clip is None


def test_config_hash_ignores_what_a_resumed_run_may_change() -> None:
    base = load_config(CONFIGS / "tiny_gara.yaml")
    same = load_config(
        CONFIGS / "tiny_gara.yaml",
        ["run.max_steps=500", "output_dir=/elsewhere", "logging.every_steps=3", "checkpoint.keep_last=9"],
    )
    other = load_config(CONFIGS / "tiny_gara.yaml", ["optim.lr=2e-3"])
    assert base.config_hash() == same.config_hash()
    assert base.config_hash() != other.config_hash()


def test_command_line_flags_become_overrides(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    args = parser.parse_args(
        [
            "--config",
            str(CONFIGS / "tiny_gara.yaml"),
            "--data",
            "robustseg:/data/a b",
            "--data",
            "folder:/data/x?image_dir=im",
            "--output-dir",
            str(tmp_path / "it's"),
            "--max-steps",
            "7",
            "--resume",
            "optim.lr=0.5",
        ]
    )
    config = load_config(args.config, args.overrides, cmd.settings_from_args(args))
    assert config.data.train == ["robustseg:/data/a b", "folder:/data/x?image_dir=im"]
    assert config.output_dir == str(tmp_path / "it's")
    assert (config.run.max_steps, config.resume, config.optim.lr) == (7, True, 0.5)


def test_cli_prints_config_errors_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("run:\n  batch_sise: 4\n")
    assert cli_main(["train", "--config", str(path), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'run.batch_sise'" in err and "bad.yaml" in err and "Traceback" not in err


def test_switching_the_adapter_type_starts_the_adapter_section_afresh() -> None:
    config = load_config(CONFIGS / "gara_vit_b.yaml", ["adapter.adapter_type=lora", "adapter.rank=8"])
    assert config.adapter_config() == LoRAConfig(rank=8)
    same = load_config(CONFIGS / "tiny_gara.yaml", ["adapter.adapter_type=gara", "adapter.r_low=4"])
    assert (same.adapter_config().r_low, same.adapter_config().r_high) == (4, 256)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "the config is empty"),
        ("# only a comment\n", "the config is empty"),
        ("{}\n", "the config is empty"),
        ("- model\n- adapter\n", "expected a mapping of sections .* got a list"),
        ("just words\n", "expected a mapping of sections .* got a str"),
    ],
)
def test_an_empty_or_non_mapping_config_names_the_file(tmp_path: Path, text: str, message: str) -> None:
    """Issue 13, case 3: an empty file used to fall back silently to the ViT-B recipe."""
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"recipe.yaml: {message}"):
        load_config(path)


def _float_fields(model: type, prefix: str = "") -> list[str]:
    """Every float-valued key of the training config, dotted (`optim.lr`, `optim.betas`, ...)."""
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _float_fields(annotation, f"{prefix}{name}.")
        elif "float" in str(annotation) or annotation is float:
            keys.append(f"{prefix}{name}")
    return keys


FLOAT_KEYS = _float_fields(TrainConfig)


def test_the_float_keys_are_found() -> None:
    assert {"optim.lr", "optim.betas", "loss.focal_weight", "schedule.decay_epochs"} <= set(FLOAT_KEYS)
    assert "data.degradation_weights" in FLOAT_KEYS


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("bad", [".nan", ".inf", "-.inf"])
def test_no_float_key_takes_nan_or_inf(key: str, bad: str) -> None:
    default = load_config(CONFIGS / "tiny_gara.yaml")
    current = default.to_dict()
    for part in key.split("."):
        current = current[part]
    if isinstance(current, list):
        value = f"[{', '.join([bad] * max(len(current), 1))}]"
    elif isinstance(current, dict) or current is None and key == "data.degradation_weights":
        value = f"{{clean: {bad}}}"
    else:
        value = bad
    with pytest.raises(ConfigError, match=key.split(".")[-1]):
        load_config(CONFIGS / "tiny_gara.yaml", [f"{key}={value}"])


@pytest.mark.parametrize("key", ["tau", "scale"])
@pytest.mark.parametrize("bad", [".nan", ".inf"])
def test_adapter_numbers_must_be_finite_too(key: str, bad: str) -> None:
    with pytest.raises(ConfigError, match=rf"adapter.*{key}"):
        load_config(CONFIGS / "tiny_gara.yaml", [f"adapter.{key}={bad}"])


@pytest.mark.parametrize("bad", ["-1", "4294967296", "100000000000000000000"])
def test_the_seed_fits_the_generators(bad: str) -> None:
    """Issue 29, item 9: a seed beyond 64 bits reached torch.manual_seed as an overflow traceback."""
    with pytest.raises(ConfigError, match="seed"):
        load_config(CONFIGS / "tiny_gara.yaml", [f"run.seed={bad}"])
    assert load_config(CONFIGS / "tiny_gara.yaml", ["run.seed=4294967295"]).run.seed == 2**32 - 1
