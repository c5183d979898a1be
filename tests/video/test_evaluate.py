"""Video evaluation: prompts by protocol, DAVIS's scored frames, perfect tracks score 1, records
resume, the report's intervals, and each bad flag of `garasam eval --video` named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from garasam.cli import main
from garasam.data.synthetic_video import write_clips
from garasam.errors import ConfigError
from garasam.video.evaluate import ObjectPrompt, object_prompts, plan_video_conditions, score
from garasam.video.report import aggregate


def _annotations() -> dict[int, dict[int, np.ndarray]]:
    """Object 1 on frames 0-5; object 2 appears on frame 2."""
    frames = {}
    for t in range(6):
        one, two = np.zeros((20, 30), bool), np.zeros((20, 30), bool)
        one[2:10, 2 + t : 12 + t] = True
        if t >= 2:
            two[12:18, 15:25] = True
        frames[t] = {1: one, 2: two} if t >= 2 else {1: one}
    return frames


def test_each_object_is_prompted_where_it_first_appears() -> None:
    annotations = _annotations()
    semi = object_prompts("c", annotations, "semi", 0, None)
    assert [(p.obj_id, p.frame) for p in semi] == [(1, 0), (2, 2)]
    assert np.array_equal(semi[1].mask, annotations[2][2])
    box = object_prompts("c", annotations, "box", 0, None)
    assert box[0].box.tolist() == [2, 2, 11, 9]
    clicks = object_prompts("c", annotations, "clicks", 0, None)
    assert all(annotations[p.frame][p.obj_id][int(y), int(x)] for p in clicks for x, y in p.points)
    assert len(clicks[0].points) == 3
    again = object_prompts("c", annotations, "clicks", 0, None)
    assert np.array_equal(clicks[0].points, again[0].points)  # fixed seed per (seed, clip, object)
    assert not np.array_equal(clicks[0].points, object_prompts("c", annotations, "clicks", 1, None)[0].points)
    assert len(object_prompts("c", annotations, "semi", 0, 1)) == 1
    with pytest.raises(ConfigError, match="unknown video protocol"):
        object_prompts("c", annotations, "scribble", 0, None)


def test_perfect_tracks_score_one_on_davis_frames() -> None:
    annotations = _annotations()
    prompts = [ObjectPrompt(1, 0), ObjectPrompt(2, 2)]
    perfect = score(annotations, annotations, prompts, 6, (20, 30))
    assert (
        perfect["1"]["frames"] == 4 and perfect["2"]["frames"] == 2
    )  # after the prompt, last frame left out
    assert all(v["J&F"] == 1.0 for v in perfect.values())
    assert perfect["1"]["J_decay"] == 0.0 and np.isnan(perfect["2"]["J_decay"])  # 2 frames: no last quarter
    lost = {t: {1: np.zeros((20, 30), bool)} for t in range(6)}
    assert score(lost, annotations, prompts, 6, (20, 30))["2"]["J"] == 0.0


def test_conditions_are_planned_and_checked() -> None:
    assert [c.folder for c in plan_video_conditions("imagenet-c", [1, 3], ["fog"])] == [
        "clean",
        "fog_s1",
        "fog_s3",
    ]
    assert [c.folder for c in plan_video_conditions(None, None, None)] == ["clean"]
    with pytest.raises(ConfigError, match="unknown degradation"):
        plan_video_conditions("robustseg", None, ["haze"])


def test_the_report_bootstraps_over_sequences() -> None:
    records = [
        {
            "model": "m",
            "protocol": "semi",
            "condition": "clean",
            "clip": c,
            "objects": {
                "1": dict.fromkeys(("J&F", "J", "F", "J_recall", "F_recall", "J_decay", "F_decay"), v)
            },
        }
        for c, v in (("a", 0.2), ("b", 0.4), ("c", 0.9))
    ]
    cell = aggregate(records, ["a", "b", "c"])["m"]["semi"]["clean"]["J&F"]
    assert cell["value"] == pytest.approx(0.5) and cell["low"] < 0.5 < cell["high"] and cell["sequences"] == 3


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    write_clips(root, num=2, size=(48, 48), length=4, family="target")
    return root


def _eval(clips: Path, out: Path, *flags: str) -> int:
    base = ["eval", "--video", "--data", f"frames:{clips}", "--model-type", "sam2.1_mini", "--random-weights"]
    return main([*base, "--out", str(out), *flags])


def test_the_command_writes_a_report_and_resumes(clips: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "ev"
    assert _eval(clips, out, "--only", "gauss_noise", "--protocol", "semi,box") == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results["records"]) == 2 * 2 * 2  # clips x conditions x protocols
    assert set(results["summary"]["frozen"]) == {"semi", "box"}
    assert (out / "summary.md").read_text().count("## Protocol") == 2 and (out / "jf_semi.png").is_file()
    removed = next((out / "records").rglob("*.json"))
    kept = {p: p.read_text() for p in (out / "records").rglob("*.json") if p != removed}
    removed.unlink()
    assert _eval(clips, out, "--only", "gauss_noise", "--protocol", "semi,box") == 0
    assert removed.is_file() and all(p.read_text() == text for p, text in kept.items())
    assert _eval(clips, out, "--only", "fog", "--protocol", "semi,box") == 2
    assert "holds a run with" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--protocol", "scribble"], "--protocol: unknown"),
        (["--model-type", "tiny"], "have no video mode"),
        (["--intensity-low", "2"], "--intensity-low"),
        (["--only", "haze"], "unknown degradation"),
    ],
)
def test_bad_flags_are_named(clips: Path, tmp_path: Path, capsys, flags: list[str], message: str) -> None:
    assert _eval(clips, tmp_path / "ev", *flags) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "ev").exists()


def test_video_flags_need_video(tmp_path: Path, capsys) -> None:
    assert main(["eval", "--data", "robustseg:x", "--out", str(tmp_path / "ev"), "--max-clips", "2"]) == 2
    assert "--max-clips is for --video" in capsys.readouterr().err


def test_an_oracle_tracker_scores_one_under_every_degradation(
    clips: Path, tmp_path: Path, monkeypatch
) -> None:
    """The plumbing: degraded clips keep their ground truth aligned (elastic warps it), prompts and
    scored frames line up, and a tracker that returns the ground truth scores J&F = 1 everywhere."""
    from garasam.video import evaluate as module

    annotations: dict[int, dict[int, np.ndarray]] = {}
    original = module._degrade

    def degrade_and_remember(*args, **kwargs):
        frames, truth, curve = original(*args, **kwargs)
        annotations.clear()
        annotations.update(truth)
        return frames, truth, curve

    monkeypatch.setattr(module, "_degrade", degrade_and_remember)
    monkeypatch.setattr(module, "track", lambda predictor, frames, prompts: (annotations, {}))
    out = tmp_path / "ev"
    assert _eval(clips, out, "--only", "fog,elastic_transform", "--protocol", "semi,clicks") == 0
    summary = json.loads((out / "results.json").read_text())["summary"]["frozen"]
    values = [cell["J&F"]["value"] for protocol in summary.values() for cell in protocol.values()]
    assert len(values) == 6 and all(v == 1.0 for v in values)


def test_records_of_a_gated_model_carry_its_active_rank_per_tracked_frame(tmp_path: Path) -> None:
    """The study's claim on the gates reads them from here: GaRA's records hold, per tracked frame
    and object, each gated layer's mean active rank; a model without gates records none."""
    from garasam.adapters import GaRAConfig, inject_adapters
    from garasam.models import build_sam
    from garasam.video.clips import open_clips
    from garasam.video.evaluate import evaluate_video

    write_clips(tmp_path / "clips", 1, 0, size=(64, 64), length=4, family="target")
    clips = open_clips(f"frames:{tmp_path / 'clips'}")
    frozen = build_sam("sam2.1_mini", video=True)
    gara = inject_adapters(build_sam("sam2.1_mini", video=True), GaRAConfig(r_low=2, r_high=4))
    conditions = plan_video_conditions("robustseg", None, ["fog"])
    records = evaluate_video(
        {"frozen": frozen, "gara": gara}, clips, conditions, ["semi"], "robustseg", 0, tmp_path / "r"
    )
    by_model = {(r["model"], r["condition"]): r for r in records}
    assert all("gates" not in r for (model, _), r in by_model.items() if model == "frozen")
    for (model, _), record in by_model.items():
        if model == "gara":
            assert set(record["gates"]) == {"1", "2", "3"}  # frame 0 is prompted, not tracked
            layers = next(iter(record["gates"]["1"].values()))
            assert len(layers) == 5 and all(0 <= rank <= 4 for rank in layers.values())
