"""The web page's video tab without a browser: reading uploads, degrading clips, clicking, tracking
with both models, the overlay videos and the errors a visitor sees."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest

from garasam.adapters import GaRAConfig, adapter_config
from garasam.data.degradations import get_degradation, seed_for
from garasam.data.degradations.temporal import degrade_clip
from garasam.data.synthetic_video import generate_clip
from garasam.errors import DataError
from garasam.predict.prompts import UserPrompt
from garasam.predict.web import POSITIVE, PageState, ServerLimits, add_click, build_page
from garasam.video import web
from garasam.video.frames import VideoFileFrames
from garasam.video.web import ClipState, VideoApp, degrade_frames, load_clip, render, render_tracks
from garasam.video.writer import write_video

pytest.importorskip("av")


@pytest.fixture(scope="module")
def app() -> VideoApp:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return VideoApp.create(model_type="sam2.1_mini", device="cpu", random_weights=True)


@pytest.fixture(scope="module")
def clip() -> list[np.ndarray]:
    return list(generate_clip(3, (64, 96), 5, "target").frames)


def _prompted(frames: list[np.ndarray]) -> ClipState:
    page, _ = add_click(PageState(original=frames[0], image=frames[0]), 40.0, 30.0, POSITIVE)
    return ClipState(frames, frames, page)


def test_both_trackers_share_one_base_and_only_the_twin_has_gates(app) -> None:
    frozen, gara = app.frozen.model, app.gara.model
    assert adapter_config(frozen) is None and isinstance(adapter_config(gara), GaRAConfig)
    assert gara.memory_attention is frozen.memory_attention or all(
        a is b
        for a, b in zip(gara.memory_attention.parameters(), frozen.memory_attention.parameters(), strict=True)
    )
    assert any("zero-initialised GaRA" in note for note in app.notes)


def test_tracking_gives_both_models_masks_speeds_and_ranks_per_frame(app, clip) -> None:
    tracks = app.track(clip, UserPrompt(points=((40.0, 30.0),), labels=(1,)))
    assert len(tracks.frozen) == len(tracks.gara) == len(clip)
    assert tracks.frozen[0].shape == (64, 96)
    # zero-initialised GaRA adds nothing: the same masks on every frame
    for frozen, gara in zip(tracks.frozen, tracks.gara, strict=True):
        np.testing.assert_array_equal(frozen, gara)
    assert [frame for frame, _ in tracks.ranks] == [1, 2, 3, 4]  # frame 0 is prompted, not tracked
    assert all(rank > 0 for _, rank in tracks.ranks) and tracks.frozen_fps > 0 and tracks.gara_fps > 0


def test_track_writes_two_videos_a_browser_plays(app, clip, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    state, canvas, frozen, gara, ranks, status = render_tracks(app, _prompted(clip))
    for video in (frozen, gara):
        assert Path(video).suffix == ".webm" and Path(video).parent == tmp_path / "video-tab"
        assert len(VideoFileFrames(video)) == len(clip)
    assert canvas.shape == (64, 96, 3) and ranks.ndim == 3
    assert status.startswith(f"Tracked {len(clip)} frames: SAM 2.1 ") and "frames/s" in status


def test_track_without_a_prompt_asks_for_one(app, clip) -> None:
    state = ClipState(clip, clip, PageState(original=clip[0], image=clip[0]))
    assert render_tracks(app, state)[-1] == "Click the object on the first frame first."
    assert render(ClipState())[-1] == "Upload a clip or take the sample."


def test_a_prompt_off_the_frame_is_a_message_and_is_dropped(app, clip) -> None:
    stale = dataclasses.replace(
        _prompted(clip), page=PageState(original=clip[0], image=clip[0], points=[(500.0, 5.0)], labels=[1])
    )
    result = web._guarded(lambda state: render_tracks(app, state))(stale)
    assert "**Error:**" in result[-1] and "outside the 96x64" in result[-1]
    assert result[0].page.prompt() is None and result[0].frames is not None


def test_degraded_clips_are_the_training_functions_and_reproducible(clip) -> None:
    degraded = degrade_frames(clip, "robustseg", "gauss_noise", 1)
    again = degrade_frames(clip, "robustseg", "gauss_noise", 1)
    expected, _ = degrade_clip(
        get_degradation("robustseg", "gauss_noise"), clip, seed_for("web-video", "gauss_noise", 1), 1
    )
    for a, b, c in zip(degraded, again, expected, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    noise = [d.astype(int) - c for d, c in zip(degraded, clip, strict=True)]
    assert np.any(noise[0] != noise[1])  # noise redrawn per frame
    assert all(
        np.array_equal(a, b) for a, b in zip(degrade_frames(clip, "robustseg", "clean"), clip, strict=True)
    )


def test_an_upload_that_is_not_a_video_is_refused_by_name(tmp_path) -> None:
    fake = tmp_path / "holiday.mp4"
    fake.write_text("not a video at all")
    with pytest.raises(DataError) as caught:
        load_clip(fake)
    assert "holiday.mp4" in str(caught.value) and str(tmp_path) not in str(caught.value)


def test_an_upload_over_the_limit_is_refused_before_decoding(tmp_path) -> None:
    big = tmp_path / "long.mp4"
    with open(big, "wb") as handle:
        handle.truncate(21 * 2**20)
    with pytest.raises(DataError, match=r"long.mp4: 21.0 MB is over the 20 MB upload limit"):
        load_clip(big)


def test_long_and_large_uploads_are_cut_and_shrunk_with_a_note(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(web, "MAX_FRAMES", 4)
    monkeypatch.setattr(web, "WORKING_SIDE", 64)
    path = tmp_path / "walk.mp4"
    write_video(path, [np.full((96, 128, 3), 10 * i, np.uint8) for i in range(7)])
    frames, note = load_clip(path)
    assert len(frames) == 4 and frames[0].shape == (48, 64, 3)
    assert note == "Tracking the first 4 of 7 frames and shrunk to 64x48."


def test_the_page_gets_a_video_tab_with_its_own_session_state(app) -> None:
    pytest.importorskip("gradio")
    limits = ServerLimits(session_ttl_s=7)
    page = build_page(_image_app(), limits, [("Video", lambda: web.build_video_tab(app, limits))])
    labels = [block.label for block in page.blocks.values() if type(block).__name__ == "Tab"]
    assert labels == ["Image", "Video"]
    states = [block for block in page.blocks.values() if type(block).__name__ == "State"]
    assert sorted(type(s.value).__name__ for s in states) == ["ClipState", "PageState"]
    assert {state.time_to_live for state in states} == {7}


def _image_app():
    from garasam.predict.web import WebApp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return WebApp.create(device="cpu")


def test_a_real_sam2_without_weights_is_refused_unless_asked() -> None:
    from garasam.errors import ConfigError

    with pytest.raises(ConfigError, match="sam2.1_hiera_t"):
        VideoApp.create(model_type="sam2.1_hiera_t", device="cpu")
    with pytest.raises(ConfigError, match="the video tab needs SAM 2.1"):
        VideoApp.create(model_type="tiny", device="cpu")
