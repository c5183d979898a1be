"""Every recipe under configs/paper/ runs: overridden to the tiny SAM, one training step and one
evaluation batch each (issue 19), so no recipe rots; and docs/paper.md names every one of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from garasam.adapters import load_adapters
from garasam.data.readers import open_dataset
from garasam.eval import evaluate
from garasam.models import build_sam
from garasam.train import train
from garasam.train.config import load_config
from tests.train.conftest import CONFIGS, fast_overrides

PAPER = CONFIGS / "paper"
RECIPES = sorted(p.name for p in PAPER.glob("*.yaml"))
DOC = CONFIGS.parent / "docs" / "paper.md"


def _tiny(recipe: str, output: Path, scenes: str, checkpoint: Path, *extra: str):
    overrides = [
        *fast_overrides(output, scenes, checkpoint),
        "model.model_type=tiny",
        "run.max_steps=1",
        *extra,
    ]
    return load_config(PAPER / recipe, overrides)


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_trains_one_step_and_evaluates_one_batch(
    recipe: str, scenes: str, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    extra = []
    if "finetune" in recipe:  # fine-tuning starts from adapters trained by the same recipe
        start = train(_tiny(recipe, tmp_path / "start", scenes, tiny_checkpoint))
        extra.append(f"model.init_adapters={start.adapters_dir}")
    config = _tiny(recipe, tmp_path / "run", scenes, tiny_checkpoint, *extra)
    result = train(config)
    assert result.status == "completed" and result.steps == 1
    model = load_adapters(build_sam("tiny", tiny_checkpoint), result.adapters_dir)
    results = evaluate(
        {"m": model},
        open_dataset(scenes),
        prompts=("box",),
        degradations=["fog"],
        max_images=1,
        progress=False,
    )
    assert results.count("m", "box", results.conditions) > 0


def test_docs_paper_names_every_recipe_and_only_existing_ones() -> None:
    text = DOC.read_text()
    named = set(re.findall(r"configs/paper/([\w.]+\.yaml)", text))
    assert named == set(RECIPES), (sorted(set(RECIPES) - named), sorted(named - set(RECIPES)))


def test_every_recipe_the_docs_name_exists() -> None:
    root = CONFIGS.parent
    for doc in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for name in re.findall(r"configs/([\w./]+\.yaml)", doc.read_text()):
            assert (CONFIGS / name).is_file(), f"{doc.name} names configs/{name}, which does not exist"
