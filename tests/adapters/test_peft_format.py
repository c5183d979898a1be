"""LoRA adapters interoperate with PEFT both ways on transformers' SamModel (issue 20, item 3)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from garasam.adapters import (
    GaRAConfig,
    LoRAConfig,
    adapter_config,
    inject_adapters,
    load_adapters,
    save_adapters,
)
from garasam.errors import CheckpointError
from garasam.models import build_sam
from tests.adapters.conftest import randomize_b
from tests.conftest import embeddings

peft = pytest.importorskip("peft")


def _qkv_names(model) -> list[str]:
    return [name for name, _ in model.named_modules() if name.endswith("attn.qkv")]


def test_peft_loads_a_garasam_lora_folder(pixels, tmp_path) -> None:
    ours = inject_adapters(build_sam("tiny"), LoRAConfig(rank=4, scale=0.5))
    randomize_b(ours)
    folder = save_adapters(ours, tmp_path / "lora")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PEFT notes the garasam keys it does not know
        theirs = peft.PeftModel.from_pretrained(build_sam("tiny"), folder).eval()
    torch.testing.assert_close(embeddings(theirs, pixels), embeddings(ours, pixels), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rslora", [False, True])
def test_garasam_loads_a_peft_lora_folder(pixels, tmp_path, rslora) -> None:
    config = peft.LoraConfig(
        r=4, lora_alpha=12, target_modules=_qkv_names(build_sam("tiny")), use_rslora=rslora
    )
    theirs = peft.get_peft_model(build_sam("tiny"), config).eval()
    with torch.no_grad():
        for name, parameter in theirs.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    theirs.save_pretrained(tmp_path / "peft")
    ours = load_adapters(build_sam("tiny"), tmp_path / "peft")
    expected_scale = 12 / 2 if rslora else 12 / 4
    assert adapter_config(ours).rank == 4 and adapter_config(ours).scale == pytest.approx(expected_scale)
    torch.testing.assert_close(embeddings(ours, pixels), embeddings(theirs, pixels), rtol=1e-5, atol=1e-6)


def test_peft_options_garasam_lacks_are_refused_by_name(tmp_path) -> None:
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=_qkv_names(build_sam("tiny")), use_dora=True)
    peft.get_peft_model(build_sam("tiny"), config).save_pretrained(tmp_path / "dora")
    model = build_sam("tiny")
    with pytest.raises(
        CheckpointError, match="PEFT LoRA options garasam's LoRA does not have: use_dora=True"
    ):
        load_adapters(model, tmp_path / "dora")
    assert adapter_config(model) is None
    (tmp_path / "ia3").mkdir()
    (tmp_path / "ia3" / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    with pytest.raises(CheckpointError, match="a PEFT IA3 adapter; garasam reads PEFT LoRA adapters only"):
        load_adapters(model, tmp_path / "ia3")


def test_a_gara_folder_is_not_taken_for_a_peft_one(tmp_path) -> None:
    folder = save_adapters(
        inject_adapters(build_sam("tiny"), GaRAConfig(r_low=2, r_high=4)), tmp_path / "gara"
    )
    meta = json.loads((folder / "adapter_config.json").read_text())
    assert "peft_type" not in meta and meta["adapter"]["adapter_type"] == "gara"
    with pytest.raises(Exception, match="peft_type"):  # PEFT's own refusal
        peft.PeftModel.from_pretrained(build_sam("tiny"), folder)
