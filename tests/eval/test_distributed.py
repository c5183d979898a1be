"""Sharded evaluation over 2 gloo processes gives the single-process numbers."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from garasam.adapters import GaRAConfig, inject_adapters
from garasam.eval.protocol import evaluate
from garasam.eval.results import Results
from tests.eval.conftest import DEGRADATIONS, scenes, tiny_sam


def _evaluate() -> Results:
    frozen = tiny_sam()
    torch.manual_seed(0)  # the same gate networks in every process
    gara = inject_adapters(copy.deepcopy(frozen), GaRAConfig(r_low=4, r_high=16))
    # 3 images over 2 ranks: rank 0 scores images 0 and 2, rank 1 image 1
    return evaluate({"frozen": frozen, "gara": gara}, scenes(3), degradations=DEGRADATIONS, progress=False)


def _summary(results: Results) -> dict:
    return {
        "scores": {key: (sums.sums, sums.count) for key, sums in results.scores.items()},
        "gates": {key: (g.active_rank, g.high_fraction, g.images) for key, g in results.gates.items()},
        "num_images": results.num_images,
        "world_size": results.config["world_size"],
    }


def _worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        summary = _summary(_evaluate())
        with open(f"{out_file}.{rank}", "wb") as handle:
            pickle.dump(summary, handle)
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_give_the_single_process_numbers(tmp_path: Path) -> None:
    single = _summary(_evaluate())
    out = tmp_path / "summary.pkl"
    # fork, not spawn: the children skip re-importing torch and transformers (seconds per process)
    mp.start_processes(_worker, args=(2, str(tmp_path / "init"), str(out)), nprocs=2, start_method="fork")
    ranks = [pickle.loads(Path(f"{out}.{rank}").read_bytes()) for rank in range(2)]
    assert ranks[0] == ranks[1]  # every rank returns the combined results
    sharded = ranks[0]
    assert sharded["world_size"] == 2 and single["world_size"] == 1
    assert sharded["num_images"] == single["num_images"] == 3
    assert sharded["scores"].keys() == single["scores"].keys()
    for key, (sums, count) in single["scores"].items():
        other_sums, other_count = sharded["scores"][key]
        assert other_count == count > 0
        # the same per-object values, added in another order
        assert other_sums == pytest.approx(sums, rel=1e-12, abs=1e-12)
    assert sharded["gates"].keys() == single["gates"].keys()
    for key, values in single["gates"].items():
        assert sharded["gates"][key] == pytest.approx(values, rel=1e-12)
