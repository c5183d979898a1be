import pytest
import torch
from transformers import SamModel

from garasam.adapters import (
    GaRAConfig,
    LoRAConfig,
    MoELoRAConfig,
    adapter_config,
    adapter_layers,
    gate_summary,
    inject_adapters,
    remove_adapters,
    trainable_parameters,
)
from garasam.errors import ConfigError
from garasam.models.registry import MODEL_TYPES, sam_config
from tests.adapters.conftest import randomize_b

CONFIGS = [GaRAConfig(), LoRAConfig(rank=16), MoELoRAConfig(), GaRAConfig(gating="unified")]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: type(c).__name__)
@pytest.mark.parametrize("train_mode", [False, True])
def test_untrained_adapter_leaves_output_bit_identical(tiny_sam, sam_inputs, config, train_mode) -> None:
    with torch.no_grad():
        before = tiny_sam(**sam_inputs)
    inject_adapters(tiny_sam, config)
    tiny_sam.train(train_mode)
    with torch.no_grad():
        after = tiny_sam(**sam_inputs)
    assert torch.equal(before.pred_masks, after.pred_masks)
    assert torch.equal(before.iou_scores, after.iou_scores)


def test_targets_every_qkv_and_nothing_else(tiny_sam) -> None:
    inject_adapters(tiny_sam, GaRAConfig())
    layers = adapter_layers(tiny_sam)
    assert list(layers) == [f"vision_encoder.layers.{i}.attn.qkv" for i in range(6)]
    assert not any(layer.training for layer in layers.values()), "adapters inherit the model's eval mode"
    assert all(layer.training for layer in adapter_layers(tiny_sam.train()).values())


def test_only_adapters_and_gates_get_gradients(tiny_sam, sam_inputs) -> None:
    inject_adapters(tiny_sam, GaRAConfig())
    randomize_b(tiny_sam)
    tiny_sam.train()
    out = tiny_sam(
        pixel_values=sam_inputs["pixel_values"].repeat(4, 1, 1, 1),
        input_points=sam_inputs["input_points"].repeat(4, 1, 1, 1),
    )
    out.pred_masks.square().mean().backward()
    for name, param in tiny_sam.named_parameters():
        is_adapter = ".qkv." in name and ".base." not in name
        assert param.requires_grad == is_adapter, name
        if not is_adapter:
            assert param.grad is None, name
    # Every A/B matrix and the space gate of every block is reached through the straight-through path.
    for name, layer in adapter_layers(tiny_sam).items():
        assert layer.lora_A.grad.abs().sum() > 0, name
        assert layer.space_gate[0].weight.grad.abs().sum() > 0, name


def test_gate_summary_per_window_and_per_image(tiny_sam, sam_inputs) -> None:
    inject_adapters(tiny_sam, GaRAConfig())
    with torch.no_grad():
        tiny_sam(**sam_inputs)
    summary = {s.name.split(".")[2]: s for s in gate_summary(tiny_sam, batch_size=2)}
    # tiny: 16x16 tokens, window 8 -> 4 windows per image; blocks 2 and 5 are global.
    assert [summary[str(i)].rows_per_image for i in range(6)] == [4, 4, 1, 4, 4, 1]
    for s in summary.values():
        assert s.mean_active_rank.shape == (2,) and (s.mean_active_rank <= 256).all()
        assert ((s.high_fraction >= 0) & (s.high_fraction <= 1)).all()


def _meta_model(model_type: str, config) -> SamModel:
    with torch.device("meta"):
        model = SamModel(sam_config(model_type))
    return inject_adapters(model, config)


@pytest.mark.parametrize("model_type", ["vit_b", "vit_l", "vit_h"])
def test_parameter_counts_match_the_formula(model_type) -> None:
    spec = MODEL_TYPES[model_type]
    c, depth = spec.hidden_size, spec.num_hidden_layers
    gara = trainable_parameters(_meta_model(model_type, GaRAConfig()))
    assert gara.low_rank == depth * 272 * (c + 3 * c)
    if model_type == "vit_b":
        assert gara.low_rank == 12 * 272 * (768 + 2304) == 10_027_008
    space_gate = c * 64 + 64 + 64 + 1
    component_gates = sum(c * 16 + 16 + 16 * 16 + 16 + 16 * r + r for r in (16, 256))
    assert gara.gates == depth * (space_gate + component_gates)
    assert gara.trainable == gara.low_rank + gara.gates
    for rank in (16, 128, 256):
        lora = trainable_parameters(_meta_model(model_type, LoRAConfig(rank=rank)))
        assert lora.trainable == lora.low_rank == depth * rank * 4 * c and lora.gates == 0


def test_injecting_twice_or_missing_targets_is_an_error(tiny_sam) -> None:
    with pytest.raises(ConfigError, match="matches no module"):
        inject_adapters(tiny_sam, LoRAConfig(target_modules=r"no_such_layer$"))
    with pytest.raises(ConfigError, match="not nn.Linear"):
        inject_adapters(tiny_sam, LoRAConfig(target_modules=r"attn$"))
    inject_adapters(tiny_sam, LoRAConfig())
    with pytest.raises(ConfigError, match="already has adapters"):
        inject_adapters(tiny_sam, GaRAConfig())


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ConfigError, match="r_low"):
        GaRAConfig(r_low=0)
    with pytest.raises(ConfigError, match="gating"):
        GaRAConfig(gating="sometimes")
    with pytest.raises(ConfigError, match="expert_ranks"):
        MoELoRAConfig(expert_ranks=(16,))


def test_remove_adapters_gives_the_original_layers_back(tiny_sam) -> None:
    before = {name: type(m) for name, m in tiny_sam.named_modules()}
    inject_adapters(tiny_sam, GaRAConfig(r_low=2, r_high=4))
    assert adapter_config(tiny_sam) is not None
    remove_adapters(tiny_sam)
    assert adapter_config(tiny_sam) is None
    assert {name: type(m) for name, m in tiny_sam.named_modules()} == before
    assert "save_pretrained" not in vars(tiny_sam)  # transformers' own method is back
    inject_adapters(tiny_sam, LoRAConfig(rank=2))  # a plain model again: another injection works
