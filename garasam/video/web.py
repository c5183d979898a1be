"""The web page's video tab (`garasam serve`): follow one object through a short clip with SAM 2.1
and with GaRA-SAM 2.1, side by side, on a copy of the clip degraded coherently in time.

Upload a clip (or take the generated sample), choose a degradation, click the object on the first
frame (points, or two box corners) and press Track: both models follow it through every frame; the
tab shows both overlays as videos, each model's frames/s and GaRA's mean active rank per frame.
Clips are cut to `MAX_FRAMES` frames and shrunk to `WORKING_SIDE` px: the tab demonstrates on a
CPU-sized budget, `garasam track` is for whole videos.

The degradations are `degrade_clip`'s, as in training and evaluation: parameters drawn once per
clip, noise redrawn per frame, rain and snow moving. The image tab's prompt state, clicks and
message handling are reused (`garasam.predict.web`); both models share one set of SAM 2.1 weights.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import nn

from garasam.adapters import GaRAConfig, adapter_config
from garasam.assembly import ModelSpec, build_model, resolve_model_type
from garasam.data.degradations import SUITES, get_degradation, seed_for
from garasam.data.degradations.temporal import degrade_clip
from garasam.data.synthetic_video import generate_clip
from garasam.errors import ConfigError, DataError, GarasamError
from garasam.models.build import bundled_weights
from garasam.models.registry import family_of
from garasam.predict.overlay import overlay
from garasam.predict.prompts import UserPrompt
from garasam.predict.web import (
    MAX_UPLOAD_BYTES,
    MODES,
    POSITIVE,
    PageState,
    ServerLimits,
    add_click,
    degradation_names,
    error_message,
    fit_working_size,
    public_message,
    severity_slider,
    shared_twin,
)
from garasam.video.frames import VideoFileFrames
from garasam.video.predictor import VideoPredictor
from garasam.video.writer import write_video

MAX_FRAMES = 48
WORKING_SIDE = 480
DEFAULT_MODEL = "sam2.1_tiny"
SAMPLE_SEED = 7  # the generated sample: a target-family clip, the family adapters are trained on
FPS = 8.0


@dataclass
class ClipState:
    """One visitor's clip, its degraded copy and the prompt on its first frame (`page.image`)."""

    clean: list[np.ndarray] | None = None
    frames: list[np.ndarray] | None = None
    page: PageState = field(default_factory=PageState)
    note: str = ""  # how the upload was cut or shrunk


@dataclass
class Tracks:
    """Both models' masks of one object on every frame, their speed and GaRA's rank per frame."""

    frozen: list[np.ndarray]
    gara: list[np.ndarray]
    frozen_fps: float
    gara_fps: float
    ranks: list[tuple[int, float]]  # (frame, GaRA's mean active rank over its gated layers) per
    # tracked frame (the prompted frame 0 is decoded, not tracked); [] without gates


class VideoApp:
    """The two trackers behind the tab."""

    def __init__(self, frozen: nn.Module, gara: nn.Module, notes: list[str]) -> None:
        self.frozen = VideoPredictor(frozen)
        self.gara = VideoPredictor(gara, record_gates=True)
        self.notes = notes
        config = adapter_config(gara)
        self.rank_limits = (config.r_low, config.r_high) if isinstance(config, GaRAConfig) else None
        self._lock = threading.Lock()  # one tracking run at a time: it holds the CPU anyway

    @classmethod
    def create(
        cls,
        checkpoint: str | os.PathLike | None = None,
        adapters: str | os.PathLike | None = None,
        model_type: str | None = None,
        device: str | None = None,
        random_weights: bool = False,
    ) -> VideoApp:
        """SAM 2.1 in video mode and its GaRA twin: adapters from `adapters` (image or video
        adapters), else zero-initialised GaRA in the image encoder (masks equal SAM 2.1's)."""
        if model_type is None and checkpoint is None and adapters is None:
            model_type = DEFAULT_MODEL
        resolved = resolve_model_type(adapters, checkpoint, model_type)
        if family_of(resolved) != "sam2":
            raise ConfigError(f"the video tab needs SAM 2.1, got --video-model-type {resolved}")
        notes = [f"Video backbone: {resolved}{'' if checkpoint is None else f', {Path(checkpoint).name}'}."]
        bundled = bundled_weights(resolved)
        if checkpoint is None and bundled is not None and not bundled.is_file():
            notes.append(f"The bundled {resolved} weights are missing: both video models use random weights.")
            random_weights = True  # a real type without a checkpoint is still refused unless asked for
        elif checkpoint is None and bundled is None:
            notes.append(f"No checkpoint given: {resolved} has random weights.")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            base = build_model(
                ModelSpec(resolved, checkpoint), device=device, random_weights=random_weights, video=True
            )
        spec = ModelSpec(adapters=None if adapters is None else Path(adapters))
        gara = build_model(spec, base=shared_twin(base), inject=GaRAConfig(), video=True)
        if adapters is not None:
            notes.append(f"GaRA-SAM 2.1 uses the adapters in {Path(adapters).name}.")
        else:
            notes.append(
                "No trained video adapters: GaRA-SAM 2.1 uses zero-initialised GaRA, so its masks equal "
                "SAM 2.1's. Start the server with --video-adapters DIR to compare a trained model."
            )
        return cls(base, gara, notes)

    def track(self, frames: list[np.ndarray], prompt: UserPrompt) -> Tracks:
        """Follow the object prompted on frame 0 through every frame, with both models."""
        prompt.check_inside(frames[0].shape[0], frames[0].shape[1], "first frame")
        with self._lock:
            frozen, frozen_fps, _ = _follow(self.frozen, frames, prompt)
            gara, gara_fps, ranks = _follow(self.gara, frames, prompt)
        return Tracks(frozen, gara, frozen_fps, gara_fps, ranks)


def _follow(
    predictor: VideoPredictor, frames: list[np.ndarray], prompt: UserPrompt
) -> tuple[list[np.ndarray], float, list[tuple[int, float]]]:
    begun = time.perf_counter()
    state = predictor.init_state(frames)
    points = [list(p) for p in prompt.points] or None
    predictor.add_new_points_or_box(
        state, 0, 1, points=points, labels=list(prompt.labels) if points else None, box=prompt.box
    )
    masks = [(logits[0, 0] > 0).cpu().numpy() for _, _, logits in predictor.propagate_in_video(state)]
    fps = len(frames) / (time.perf_counter() - begun)
    ranks = []
    for frame in range(len(frames)):
        layers = state.gate_log.get(frame, {}).get(1, {})
        if layers:
            ranks.append((frame, float(np.mean(list(layers.values())))))
    return masks, fps, ranks


def sample_clip() -> list[np.ndarray]:
    """The generated sample: 24 frames of a synthetic target-family clip (no download, no file)."""
    return list(generate_clip(SAMPLE_SEED, (240, 320), 24, "target").frames)


def load_clip(path: str | os.PathLike) -> tuple[list[np.ndarray], str]:
    """An uploaded video's first `MAX_FRAMES` frames at working size, and a note of what was cut;
    a file over the upload limit or that PyAV cannot decode is refused by name."""
    path = Path(path)
    size = path.stat().st_size if path.is_file() else 0
    if size > MAX_UPLOAD_BYTES:
        raise DataError(
            f"{path.name}: {size / 2**20:.1f} MB is over the {MAX_UPLOAD_BYTES // 2**20} MB upload limit"
        )
    try:
        source = VideoFileFrames(path)
        frames = [
            fit_working_size(source.frame(i), WORKING_SIDE) for i in range(min(len(source), MAX_FRAMES))
        ]
    except GarasamError as err:  # names the server's temporary path: the file name only
        raise DataError(public_message(str(err))) from None
    except Exception:  # PyAV's own errors for a file that is not a video
        raise DataError(f"{path.name}: not a video PyAV can decode") from None
    notes = []
    if len(source) > MAX_FRAMES:
        notes.append(f"the first {MAX_FRAMES} of {len(source)} frames")
    if frames[0].shape[:2] != source.size:
        notes.append(f"shrunk to {frames[0].shape[1]}x{frames[0].shape[0]}")
    return frames, f"Tracking {' and '.join(notes)}." if notes else ""


def degrade_frames(
    clean: list[np.ndarray], suite: str, name: str, severity: int | None = None
) -> list[np.ndarray]:
    """The clip under one degradation, coherent in time and reproducible (seeded by the degradation)."""
    degradation = get_degradation(suite, name)
    level = degradation.default_severity if severity is None else int(severity)
    return degrade_clip(degradation, clean, seed_for("web-video", degradation.name, level), level)[0]


def rank_curve(ranks: list[tuple[int, float]], rank_limits: tuple[int, int] | None) -> np.ndarray | None:
    """GaRA's mean active rank per frame, as a small line chart (RGB array); None without gates."""
    if not ranks:
        return None
    figure = Figure(figsize=(6.4, 2.4), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    frames, values = zip(*ranks, strict=True)
    axes.plot(frames, values, color="#0072B2", marker=".")
    for limit in rank_limits or ():
        axes.axhline(limit, color="#D55E00", linestyle="--", linewidth=1)
    axes.set_xlabel("frame")
    axes.set_ylabel("mean active rank")
    axes.set_ylim(0, 1.15 * max([*values, *(rank_limits or ()), 1.0]))
    axes.set_title("GaRA-SAM 2.1: mean active rank of the image encoder per frame", fontsize=10)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def overlay_video(frames: list[np.ndarray], masks: list[np.ndarray], prompt: UserPrompt) -> str:
    """Both an overlay's frames as a WebM file (VP8: Chromium and Firefox play it) in the server's
    temp folder, which the server sweeps; returns its path."""
    folder = Path(os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()) / "video-tab"
    folder.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(suffix=".webm", dir=folder)
    os.close(handle)
    shown = (
        overlay(frame, [mask], [prompt] if i == 0 else [])
        for i, (frame, mask) in enumerate(zip(frames, masks, strict=True))
    )
    write_video(name, shown, fps=FPS)
    return name


# ---- Gradio wiring -------------------------------------------------------------------------------


# What a tab update returns, in this order: state, first frame, SAM 2.1 video, GaRA video, rank
# curve, status message.
def render(state: ClipState, message: str = "") -> tuple[Any, ...]:
    """The prompted first frame, the videos cleared (a new clip, degradation or prompt)."""
    if state.frames is None:
        return (state, None, None, None, None, message or "Upload a clip or take the sample.")
    page = state.page
    prompt = page.prompt()
    canvas = overlay(state.frames[0], prompts=[prompt] if prompt else [], pending_corner=page.corner)
    hint = message or (
        "Press Track to follow the object." if prompt else "Click the object on the first frame."
    )
    return (state, canvas, None, None, None, " ".join(t for t in (state.note, hint) if t))


def render_tracks(app: VideoApp, state: ClipState) -> tuple[Any, ...]:
    prompt = state.page.prompt() if state.frames is not None else None
    if prompt is None:
        return render(state, "Click the object on the first frame first.")
    tracks = app.track(state.frames, prompt)
    canvas = render(state)[1]
    status = (
        f"Tracked {len(state.frames)} frames: SAM 2.1 {tracks.frozen_fps:.1f} frames/s, "
        f"GaRA-SAM 2.1 {tracks.gara_fps:.1f} frames/s."
    )
    return (
        state,
        canvas,
        overlay_video(state.frames, tracks.frozen, prompt),
        overlay_video(state.frames, tracks.gara, prompt),
        rank_curve(tracks.ranks, app.rank_limits),
        status,
    )


def _guarded(handler: Any) -> Any:
    """A user error becomes the status line; the clip and its prompt stay (or the prompt goes, if it
    is what failed)."""

    @functools.wraps(handler)
    def run(*args: Any) -> tuple[Any, ...]:
        state = next((a for a in args if isinstance(a, ClipState)), ClipState())
        try:
            return handler(*args)
        except Exception as err:  # whatever fails, the page gets a message, never a trace or a path
            message = error_message(err, "video tab")
            return render(dataclasses.replace(state, page=state.page.cleared()), message)

    return run


def with_clip(clean: list[np.ndarray], note: str, suite: str, name: str, severity: float) -> tuple[Any, ...]:
    frames = degrade_frames(clean, suite, name, int(severity))
    return render(ClipState(clean, frames, PageState(original=clean[0], image=frames[0]), note))


def build_video_tab(app: VideoApp, limits: ServerLimits) -> None:
    """The tab's widgets and events, inside the caller's `gr.Blocks` / `gr.Tab` context."""
    import gradio as gr

    suites = list(SUITES)

    def on_upload(
        path: str | None, state: ClipState, suite: str, name: str, severity: float
    ) -> tuple[Any, ...]:
        if path is None:
            return render(state)
        return with_clip(*load_clip(path), suite, name, severity)

    def on_sample(state: ClipState, suite: str, name: str, severity: float) -> tuple[Any, ...]:
        return with_clip(sample_clip(), "The generated sample clip (24 frames).", suite, name, severity)

    def on_degradation(state: ClipState, suite: str, name: str, severity: float) -> tuple[Any, ...]:
        if state.clean is None:
            return render(state)
        return with_clip(state.clean, state.note, suite, name, severity)

    def on_click(state: ClipState, mode: str, evt: Any) -> tuple[Any, ...]:
        x, y = evt.index
        page, message = add_click(state.page, float(x), float(y), mode)
        return render(dataclasses.replace(state, page=page), message)

    on_click.__annotations__["evt"] = gr.SelectData

    gr.Markdown("\n".join(f"- {note}" for note in app.notes), elem_id="video-notes")
    state = gr.State(ClipState(), time_to_live=limits.session_ttl_s)
    with gr.Row():
        with gr.Column(scale=1):
            upload = gr.File(
                label=f"Upload a clip (max 20 MB; the first {MAX_FRAMES} frames are tracked)",
                file_types=["video"],
                type="filepath",
                elem_id="video-upload",
            )
            sample = gr.Button("…or take the generated sample clip", elem_id="video-sample")
            suite = gr.Dropdown(suites, value=suites[0], label="Degradation suite", elem_id="video-suite")
            name = gr.Dropdown(
                degradation_names(suites[0]), value="clean", label="Degradation", elem_id="video-degradation"
            )
            severity = gr.Slider(
                0, 1, value=0, step=1, label="Severity", interactive=False, elem_id="video-severity"
            )
            mode = gr.Radio(list(MODES), value=POSITIVE, label="Click mode", elem_id="video-mode")
            track = gr.Button("Track", variant="primary", elem_id="video-track")
            clear = gr.Button("Clear prompts", elem_id="video-clear")
            status = gr.Markdown(elem_id="video-status")
        with gr.Column(scale=2):
            canvas = gr.Image(
                label="First frame: click the object", interactive=False, elem_id="video-canvas"
            )
            with gr.Row():
                frozen_video = gr.Video(label="SAM 2.1 (frozen)", interactive=False, elem_id="video-sam")
                gara_video = gr.Video(label="GaRA-SAM 2.1", interactive=False, elem_id="video-gara")
            ranks = gr.Image(label="Active rank per frame", interactive=False, elem_id="video-ranks")
    outputs = [state, canvas, frozen_video, gara_video, ranks, status]
    degradation_inputs = [state, suite, name, severity]
    upload.upload(_guarded(on_upload), [upload, *degradation_inputs], outputs)
    sample.click(_guarded(on_sample), degradation_inputs, outputs)
    suite.change(lambda s: gr.update(choices=degradation_names(s), value="clean"), suite, name)
    name.change(lambda s, n: gr.update(**severity_slider(s, n)), [suite, name], severity).then(
        _guarded(on_degradation), degradation_inputs, outputs
    )
    severity.release(_guarded(on_degradation), degradation_inputs, outputs)
    canvas.select(_guarded(on_click), [state, mode], outputs)
    clear.click(_guarded(lambda s: render(dataclasses.replace(s, page=s.page.cleared()))), state, outputs)
    track.click(_guarded(functools.partial(render_tracks, app)), state, outputs)
