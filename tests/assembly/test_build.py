"""garasam.assembly.build: the one way every command and the Python API assemble a model (issue 28)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from garasam.adapters import GaRAConfig, LoRAConfig, adapter_config, adapter_layers, inject_adapters
from garasam.assembly import ModelSpec, build_model, build_models
from garasam.assembly.build import is_fast
from garasam.errors import ConfigError
from garasam.models import build_sam
from tests.adapters.conftest import randomize_b
from tests.conftest import embeddings

ROOT = Path(__file__).resolve().parents[2] / "garasam"


@pytest.fixture
def lora_folder(tmp_path: Path) -> Path:
    model = inject_adapters(build_sam("tiny"), LoRAConfig(rank=4))
    randomize_b(model)
    model.save_pretrained(tmp_path / "lora")
    return tmp_path / "lora"


def test_a_folder_is_loaded_and_a_config_injected(lora_folder: Path, pixels: torch.Tensor) -> None:
    loaded = build_model(ModelSpec(adapters=lora_folder), device="cpu")
    assert adapter_config(loaded) == LoRAConfig(rank=4)
    assert not any(p.requires_grad for p in loaded.parameters())  # inference: nothing trains
    trainable = build_model(ModelSpec(adapters=lora_folder), device="cpu", trainable=True)
    assert all(layer.lora_A.requires_grad for layer in adapter_layers(trainable).values())
    fresh = build_model(ModelSpec(), device="cpu", inject=GaRAConfig(r_low=2, r_high=4))
    assert isinstance(adapter_config(fresh), GaRAConfig)
    # a named folder wins over the fresh config: what a resumed or fine-tuned run relies on
    both = build_model(ModelSpec(adapters=lora_folder), device="cpu", inject=GaRAConfig())
    torch.testing.assert_close(embeddings(both, pixels), embeddings(loaded, pixels), rtol=0, atol=0)


def test_the_base_is_adapted_in_place_when_given(lora_folder: Path) -> None:
    base = build_sam("tiny")
    assert build_model(ModelSpec(adapters=lora_folder), base=base) is base
    assert adapter_config(base) == LoRAConfig(rank=4)


def test_a_real_type_without_weights_is_refused_unless_asked() -> None:
    with pytest.raises(ConfigError, match="needs its weights"):
        build_model(ModelSpec("vit_b"), device="cpu")
    with pytest.raises(ConfigError, match="no CUDA device"):
        build_model(ModelSpec(), device="cuda:3") if not torch.cuda.is_available() else pytest.skip(
            "CUDA here"
        )


def test_the_fast_path_follows_the_switch(pixels: torch.Tensor) -> None:
    plain = build_model(ModelSpec(), device="cpu", fast=None)  # None: on for CUDA only
    assert not is_fast(plain)
    fast = build_model(ModelSpec(), device="cpu", fast=True, fast_dtype=torch.float32)
    assert is_fast(fast)
    torch.testing.assert_close(embeddings(fast, pixels), embeddings(plain, pixels), rtol=1e-4, atol=1e-4)


def test_several_models_share_one_read_of_their_backbone(lora_folder: Path, monkeypatch) -> None:
    import garasam.assembly.build as build

    reads = []
    real = build.build_sam
    monkeypatch.setattr(build, "build_sam", lambda *a, **k: reads.append(a) or real(*a, **k))
    models, info = build_models({"frozen": None, "lora": lora_folder}, None, None, "cpu")
    assert len(reads) == 1 and list(models) == ["frozen", "lora"]
    assert adapter_config(models["frozen"]) is None and adapter_config(models["lora"]) == LoRAConfig(rank=4)
    assert info["lora"]["adapters_dir"] == str(lora_folder) and info["frozen"]["fast_path"] is False


def _calls(path: Path, name: str) -> list[int]:
    """Lines calling the function `name` as imported (`name(...)`; methods of that name do not count)."""
    tree = ast.parse(path.read_text())
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == name
    ]


@pytest.mark.parametrize(
    "name, allowed",
    [
        # SAM is built in assembly; models/ defines it; pretraining the tiny SAM trains SAM itself
        (
            "build_sam",
            {"assembly/build.py", "models/build.py", "train/pretrain_tiny.py", "video/pretrain_tiny.py"},
        ),
        ("load_adapters", {"assembly/build.py", "train/resume.py", "adapters/io.py"}),
        ("optimize_sam", {"assembly/build.py", "fast/encoder.py"}),
        ("valid_input_sizes", set()),
        ("set_valid_tokens", {"assembly/encoding.py", "adapters/gating.py"}),
        ("gate_summary", {"adapters/gating.py"}),
        ("encode_images", {"assembly/encoding.py", "models/features.py"}),
    ],
)
def test_models_are_built_and_encoded_in_one_place(name: str, allowed: set[str]) -> None:
    """Issue 28, items 3 and 4: five builders and three hand-written gate sequences became one each."""
    found = {
        str(path.relative_to(ROOT))
        for path in ROOT.rglob("*.py")
        if _calls(path, name) and not path.name.startswith("__")
    }
    assert found <= allowed, f"{name} called outside {sorted(allowed)}: {sorted(found - allowed)}"


def test_no_module_over_600_lines() -> None:
    """Issue 28, item 5: files split by job."""
    roots = [ROOT, ROOT.parent / "benchmarks"]
    long = {str(p): n for r in roots for p in r.rglob("*.py") if (n := len(p.read_text().splitlines())) > 600}
    assert not long, long
