"""Hugging Face Hub ids through the local cache, never the network (issue 20, item 9).

A fake cache in the Hub's layout (`models--org--name/refs/main`, `snapshots/<commit>/`) holds a tiny
SAM saved by transformers and a GaraSam folder, as `hf download` would leave them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from garasam import GaraSam
from garasam.adapters import GaRAConfig, adapter_config, inject_adapters
from garasam.cli import main
from garasam.errors import CheckpointError
from garasam.models import build_sam
from garasam.models.hub import infer_model_type
from tests.adapters.conftest import randomize_b
from tests.conftest import embeddings

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty Hub cache, offline; `publish(repo_id)` returns the snapshot folder to fill."""
    from huggingface_hub import constants

    root = tmp_path / "hub"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    def publish(repo_id: str):
        repo = root / f"models--{repo_id.replace('/', '--')}"
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(COMMIT)
        snapshot = repo / "snapshots" / COMMIT
        snapshot.mkdir(parents=True)
        return snapshot

    return publish


def test_a_hub_id_loads_from_the_cache(cache, pixels) -> None:
    build_sam("tiny").save_pretrained(cache("facebook/sam-tiny-test"))
    model = build_sam("tiny", "facebook/sam-tiny-test")
    torch.testing.assert_close(
        embeddings(model, pixels), embeddings(build_sam("tiny"), pixels), rtol=0, atol=0
    )
    assert model.garasam_checkpoint["source"] == "facebook/sam-tiny-test"
    assert infer_model_type("facebook/sam-tiny-test") == "tiny"


def test_the_command_line_takes_a_hub_id(cache, tmp_path) -> None:
    from PIL import Image

    build_sam("tiny").save_pretrained(cache("facebook/sam-tiny-test"))
    Image.fromarray(np.full((40, 60, 3), 120, np.uint8)).save(tmp_path / "grey.png")
    argv = [
        "predict",
        str(tmp_path / "grey.png"),
        "--box",
        "5,5,30,30",
        "--checkpoint",
        "facebook/sam-tiny-test",
    ]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0


def test_an_id_missing_offline_says_how_to_get_it(cache) -> None:
    with pytest.raises(
        CheckpointError,
        match="facebook/sam-vit-base: no such local path, and as a Hugging Face model id not in the local cache .* HF_HUB_OFFLINE",
    ):
        build_sam("vit_b", "facebook/sam-vit-base")


def test_a_garasam_folder_on_a_hub_base_round_trips_through_the_cache(cache, pixels, tmp_path) -> None:
    build_sam("tiny").save_pretrained(cache("facebook/sam-tiny-test"))
    adapted = inject_adapters(build_sam("tiny", "facebook/sam-tiny-test"), GaRAConfig(r_low=2, r_high=4))
    randomize_b(adapted)
    folder = cache("me/gara-tiny")
    adapted.save_pretrained(folder)  # as if published: the folder refers to its base by Hub id
    loaded = GaraSam.from_pretrained("me/gara-tiny")
    assert adapter_config(loaded) == adapter_config(adapted)
    torch.testing.assert_close(embeddings(loaded, pixels), embeddings(adapted, pixels), rtol=0, atol=0)
    plain = GaraSam.from_pretrained("facebook/sam-tiny-test")  # a SAM id: the SAM, without adapters
    assert adapter_config(plain) is None


def test_a_garasam_folder_whose_base_changed_is_refused(pixels, tmp_path) -> None:
    base = tmp_path / "base"
    build_sam("tiny").save_pretrained(base)
    adapted = inject_adapters(build_sam("tiny", base), GaRAConfig(r_low=2, r_high=4))
    adapted.save_pretrained(tmp_path / "gara")
    other = build_sam("tiny", pretrained=False)
    other.save_pretrained(base)  # another SAM under the same path
    with pytest.raises(CheckpointError, match="another checkpoint"):
        GaraSam.from_pretrained(tmp_path / "gara")
    import shutil

    shutil.rmtree(base)
    with pytest.raises(CheckpointError, match="the base checkpoint .* is not there"):
        GaraSam.from_pretrained(tmp_path / "gara")


def test_a_folder_written_with_garasam_json_still_loads(tmp_path) -> None:
    """Folders of garasam 0.1.0 named their base in garasam.json beside the adapters."""
    base = tmp_path / "sam"
    build_sam("tiny").save_pretrained(base)
    adapted = inject_adapters(build_sam("tiny", base), GaRAConfig(r_low=2, r_high=4))
    adapted.save_pretrained(tmp_path / "gara")
    identity = adapted.garasam_checkpoint
    record = {"format_version": 1, "base": {"model_type": "tiny", **identity}}
    (tmp_path / "gara" / "garasam.json").write_text(json.dumps(record))
    meta = json.loads((tmp_path / "gara" / "adapter_config.json").read_text())
    meta["backbone"]["checkpoint"] = {k: v for k, v in identity.items() if k != "source"}  # as 0.1.0 wrote it
    (tmp_path / "gara" / "adapter_config.json").write_text(json.dumps(meta))
    loaded = GaraSam.from_pretrained(tmp_path / "gara")
    assert adapter_config(loaded) == adapter_config(adapted)
    (tmp_path / "gara" / "garasam.json").unlink()
    with pytest.raises(CheckpointError, match="names no base checkpoint"):
        GaraSam.from_pretrained(tmp_path / "gara")
