"""`garasam serve`: a web page that compares frozen SAM with GaRA-SAM on a degraded image.

Upload an image (or pick a bundled sample), choose a degradation, click points or two box corners,
and see both models' masks side by side with their predicted IoU, plus how many rank components
GaRA's gates switched on in each encoder block for this image.

Both models share one set of SAM weights: the GaRA-SAM model is a twin of the frozen one whose
parameters are the same tensors, with adapters injected into the twin only. The page's logic lives
in plain functions and the `WebApp` class, so it is tested without a browser; `build_page` only
wires them to Gradio widgets.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import dataclasses
import functools
import hashlib
import itertools
import logging
import os
import re
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from transformers import SamModel

from garasam.adapters import GaRAConfig, adapter_config
from garasam.adapters.io import CONFIG_NAME
from garasam.assembly import ModelSpec, accelerate, build_model, resolve_model_type
from garasam.data.degradations import SUITES, get_degradation, get_suite, seed_for
from garasam.data.images import IMAGE_SUFFIXES, load_image
from garasam.errors import ConfigError, DataError, GarasamError
from garasam.models.build import TINY_WEIGHTS
from garasam.models.registry import FAMILIES, family_of
from garasam.predict.overlay import overlay
from garasam.predict.predictor import GaraSamPredictor, block_index
from garasam.predict.prompts import UserPrompt, segment

if TYPE_CHECKING:
    import gradio as gr

    from garasam.adapters import GateSummary

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SAMPLES_DIR = ASSETS / "samples"
DEMO_ADAPTERS = ASSETS / "tiny_gara"
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_SIDE = 4096
# Uploads are shown and degraded at most this large: SAM sees 1024 px anyway, and degradations stay fast.
WORKING_SIDE = 1024
POSITIVE, NEGATIVE, BOX = "positive point", "negative point", "box (click two corners)"


@dataclass(frozen=True)
class ServerLimits:
    """What a server left running for days may hold, whatever its visitors do.

    Gradio keeps each browser session's state (the visitor's image, twice) and writes every upload
    and every answer's images to its temp folder, and frees neither by default: +154 MiB RSS and
    +54 MiB of files per 100 visitors (benchmarks/web_soak.py). Here a session's image is dropped
    `session_ttl_s` after its last use, at most `max_sessions` sessions are kept (the least recently
    used goes first), and files older than `file_ttl_s` are deleted, swept once a minute or faster."""

    max_sessions: int = 100
    session_ttl_s: float = 3600.0
    file_ttl_s: float = 600.0

    @property
    def sweep_every_s(self) -> float:
        return min(60.0, self.file_ttl_s)


class Sweeper(threading.Thread):
    """Deletes the files under `folder` older than `limits.file_ttl_s`, every `sweep_every_s`, and
    hands the memory freed meanwhile back to the system.

    Gradio's own sweep (`delete_cache`) is a task that stops for good at its first error (a file gone
    between listing and deleting), so the folder grew again; this one survives any file it meets.
    Freed memory: the models run in Gradio's worker threads, whose malloc arenas keep what they
    freed (the server's RSS rose ~0.2 MiB per visitor with nothing left alive); `malloc_trim`
    returns it (glibc only; elsewhere a no-op)."""

    def __init__(self, folder: str | os.PathLike, limits: ServerLimits) -> None:
        super().__init__(name="garasam-sweeper", daemon=True)
        self.folder = Path(folder)
        self.limits = limits
        self.stopped = threading.Event()
        self._trim = _malloc_trim()

    def run(self) -> None:
        while not self.stopped.wait(self.limits.sweep_every_s):
            self.sweep()

    def sweep(self, now: float | None = None) -> int:
        """Delete the expired files now; returns how many went."""
        cutoff = (time.time() if now is None else now) - self.limits.file_ttl_s
        removed = 0
        for root, _, files in os.walk(self.folder):
            for name in files:
                path = os.path.join(root, name)
                with contextlib.suppress(OSError):  # gone already, or in use on a strict filesystem
                    if os.lstat(path).st_mtime < cutoff:
                        os.unlink(path)
                        removed += 1
        self._trim()
        return removed


def _malloc_trim() -> Any:
    try:
        libc = ctypes.CDLL("libc.so.6")
        return lambda: libc.malloc_trim(0)
    except (OSError, AttributeError):
        return lambda: None


MODES = (POSITIVE, NEGATIVE, BOX)


@dataclass
class PageState:
    """One visitor's image and prompt; Gradio keeps one copy per browser session."""

    original: np.ndarray | None = None  # uploaded or sample image, at most WORKING_SIDE
    image: np.ndarray | None = None  # the degraded view that both models segment
    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None
    corner: tuple[float, float] | None = None  # first click of a box being drawn

    def prompt(self) -> UserPrompt | None:
        if not self.points and self.box is None:
            return None
        return UserPrompt(points=tuple(self.points), labels=tuple(self.labels), box=self.box)

    def cleared(self) -> PageState:
        return dataclasses.replace(self, points=[], labels=[], box=None, corner=None)


@dataclass
class Comparison:
    """Both models' answer to one prompt on one image."""

    frozen_mask: np.ndarray
    frozen_score: float
    gara_mask: np.ndarray
    gara_score: float
    gates: list[GateSummary] | None


def shared_twin(model: SamModel) -> SamModel:
    """A structural copy of `model` whose parameters and buffers are the very same tensors.

    Injecting adapters into the twin replaces modules in the twin only, so the original stays the
    frozen SAM without holding a second copy of the weights.
    """
    memo = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, memo)


class WebApp:
    """The two predictors behind the page, and the operations the page offers."""

    def __init__(self, frozen: SamModel, gara: SamModel, notes: list[str]) -> None:
        self.frozen = GaraSamPredictor(frozen)
        self.gara = GaraSamPredictor(gara)
        self.notes = notes
        config = adapter_config(gara)
        self.rank_limits = (config.r_low, config.r_high) if isinstance(config, GaRAConfig) else None
        self._lock = threading.Lock()  # the predictors hold one image at a time
        self._image_key: str | None = None

    @classmethod
    def create(
        cls,
        checkpoint: str | os.PathLike | None = None,
        adapters: str | os.PathLike | None = None,
        model_type: str | None = None,
        device: str | None = None,
        random_weights: bool = False,
        fast: bool | None = None,
    ) -> WebApp:
        """Build frozen SAM and GaRA-SAM on one base: adapters from `adapters`, else the bundled demo
        adapters (tiny model only), else zero-initialised GaRA (identical masks, untrained gates).
        `fast` (default: on for CUDA): both encoders on the fast path, CUDA graphs included."""
        resolved = resolve_model_type(adapters, checkpoint, model_type)
        family = FAMILIES[family_of(resolved)][1]
        notes = [
            f"Backbone: {resolved} ({family}){'' if checkpoint is None else f', {Path(checkpoint).name}'}."
        ]
        if checkpoint is None and resolved == "tiny" and not TINY_WEIGHTS.is_file():
            notes.append("The bundled tiny SAM weights are missing: both models use random weights.")
        elif checkpoint is None and resolved != "tiny":
            notes.append(f"No checkpoint given: {resolved} has random weights.")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the missing-weights warning became a note
            base = build_model(ModelSpec(resolved, checkpoint), device=device, random_weights=random_weights)
        if adapters is None and resolved == "tiny" and (DEMO_ADAPTERS / CONFIG_NAME).is_file():
            adapters = DEMO_ADAPTERS
        spec = ModelSpec(adapters=None if adapters is None else Path(adapters))
        gara = build_model(spec, base=shared_twin(base), inject=GaRAConfig())
        if adapters == DEMO_ADAPTERS:  # no server path reaches the page: the folder's name only
            notes.append("GaRA-SAM uses the bundled demo adapters (tiny_gara).")
        elif adapters is not None:
            notes.append(f"GaRA-SAM uses the adapters in {Path(adapters).name}.")
        else:
            notes.append(
                "No trained adapters: GaRA-SAM uses zero-initialised GaRA, so its masks equal SAM's "
                "and its gates are untrained. Start the server with --adapters DIR to compare a trained model."
            )
        if accelerate(base, fast, cuda_graphs="capture"):  # the twin shares its frozen weights: cast once
            accelerate(gara, True, cuda_graphs="capture")
            notes.append("Fast path: bf16 encoders, replayed as CUDA graphs once an image size repeats.")
        return cls(base, gara, notes)

    def compare(self, image: np.ndarray, prompt: UserPrompt) -> Comparison:
        """Segment `prompt` on `image` with both models (the encoders run only when the image changes)."""
        prompt.check_inside(image.shape[0], image.shape[1], "image")
        key = hashlib.sha1(image.tobytes() + str(image.shape).encode()).hexdigest()
        with self._lock:
            if key != self._image_key:
                self._image_key = None
                self.frozen.set_image(image)
                self.gara.set_image(image)
                self._image_key = key
            frozen_mask, frozen_score = segment(self.frozen, prompt)
            gara_mask, gara_score = segment(self.gara, prompt)
            gates = self.gara.gate_summary()
        return Comparison(frozen_mask, frozen_score, gara_mask, gara_score, gates)


def sample_names() -> list[str]:
    """The bundled sample images, by file name."""
    if not SAMPLES_DIR.is_dir():
        return []
    return sorted(p.name for p in SAMPLES_DIR.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def load_sample(name: str) -> np.ndarray:
    if name not in sample_names():
        raise DataError(f"unknown sample {name!r}; choose one of {sample_names()}")
    return load_image(SAMPLES_DIR / name)


def load_upload(path: str | os.PathLike) -> np.ndarray:
    """Read an uploaded file, refusing non-images and anything over 20 MB or 4096 px, at working size."""
    path = Path(path)
    size = path.stat().st_size if path.is_file() else 0
    if size > MAX_UPLOAD_BYTES:
        raise DataError(
            f"{path.name}: {size / 2**20:.1f} MB is over the {MAX_UPLOAD_BYTES // 2**20} MB upload limit"
        )
    too_large = DataError(f"{path.name}: larger than the {MAX_SIDE} px limit")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as img:  # reads the header only: cheap even for a huge image
                width, height = img.size
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise too_large from None
        except FileNotFoundError:
            raise DataError(f"{path.name}: no such upload") from None
        except (OSError, ValueError, SyntaxError):
            # PIL's message names the server-side temporary path: keep it out of the page
            raise DataError(f"{path.name}: not an image file (or a format the server cannot read)") from None
    if max(width, height) > MAX_SIDE:
        raise DataError(f"{path.name}: {width}x{height} is larger than the {MAX_SIDE} px limit")
    try:
        image = load_image(path)
    except DataError as err:  # a header that reads but pixels that do not: name the file, not its path
        raise DataError(str(err).replace(str(path), path.name)) from None
    return fit_working_size(image)


_LOG = logging.getLogger(__name__)
# An absolute path in a message (POSIX or Windows): only its last part may reach the page.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])(?:[A-Za-z]:)?(?:[\\/][^\s\\/:'\"()]+)+[\\/]([^\s\\/:'\"()]+)")


def public_message(text: str) -> str:
    """`text` with every absolute path cut to its file name: server paths stay on the server."""
    return _ABSOLUTE_PATH.sub(lambda match: match.group(1), text)


def fit_working_size(image: np.ndarray, side: int = WORKING_SIDE) -> np.ndarray:
    """Shrink so the longest side is at most `side` (antialiased); smaller images stay as they are."""
    height, width = image.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return image
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def degrade(image: np.ndarray, suite: str, name: str, severity: int | None = None) -> np.ndarray:
    """The image under one degradation, reproducibly (the seed depends on the degradation only)."""
    degradation = get_degradation(suite, name)
    level = degradation.default_severity if severity is None else int(severity)
    return degradation.apply_image(image, seed_for("web", degradation.name, level), level)[0]


def severity_range(suite: str, name: str) -> tuple[int, int, int]:
    """(lowest, highest, default) severity of a degradation; robustseg has one strength per type."""
    degradation = get_degradation(suite, name)
    return min(degradation.severities), max(degradation.severities), degradation.default_severity


def degradation_names(suite: str) -> list[str]:
    """The degradation picker's choices for a suite, clean first."""
    return ["clean"] + [d.name for d in get_suite(suite)]


def severity_slider(suite: str, name: str) -> dict[str, Any]:
    """The severity slider's settings (for `gr.update`) once a degradation is picked."""
    low, high, default = severity_range(suite, name)
    label = "Severity" if high > low else "Severity (this degradation has one strength)"
    return {
        "minimum": low,
        "maximum": max(high, low + 1),
        "value": default,
        "interactive": high > low,
        "label": label,
    }


def add_click(state: PageState, x: float, y: float, mode: str) -> tuple[PageState, str]:
    """Add a click to the prompt: a point, or a box corner (the second corner closes the box)."""
    if state.image is None:
        return state, "Upload an image or pick a sample first."
    if mode not in MODES:
        return state, f"Unknown prompt mode {mode!r}."
    if mode != BOX:
        label = 1 if mode == POSITIVE else 0
        new = dataclasses.replace(state, points=[*state.points, (x, y)], labels=[*state.labels, label])
        return new, ""
    if state.corner is None:
        return dataclasses.replace(state, corner=(x, y)), "Box: now click the opposite corner."
    (ax, ay), corner = state.corner, None
    box = (min(ax, x), min(ay, y), max(ax, x), max(ay, y))
    if box[2] <= box[0] or box[3] <= box[1]:
        return dataclasses.replace(
            state, corner=corner
        ), "That box has zero area: click two different corners."
    return dataclasses.replace(state, box=box, corner=corner), ""


def rank_chart(gates: list[GateSummary] | None, rank_limits: tuple[int, int] | None = None) -> np.ndarray:
    """A bar chart (RGB array) of GaRA-SAM's mean active rank per encoder block for the current image."""
    figure = Figure(figsize=(6.4, 2.6), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    if gates:
        labels = [str(block_index(g.name)) if block_index(g.name) is not None else g.name for g in gates]
        ranks = [float(g.mean_active_rank[0]) for g in gates]
        axes.bar(range(len(ranks)), ranks, color="#0072B2")
        axes.set_xticks(range(len(ranks)), labels)
        axes.set_xlabel("encoder block")
        axes.set_ylabel("mean active rank")
        for limit, name in zip(rank_limits or (), ("r_low", "r_high"), strict=False):
            axes.axhline(limit, color="#D55E00", linestyle="--", linewidth=1)
            axes.annotate(
                name, (1.0, limit), xycoords=("axes fraction", "data"), fontsize=8, va="bottom", ha="right"
            )
        axes.set_ylim(0, 1.15 * max([*ranks, *(rank_limits or ()), 1.0]))
        axes.set_title("GaRA-SAM: active rank per encoder block (this image)", fontsize=10)
    else:
        axes.set_axis_off()
        axes.text(
            0.5, 0.5, "no gate statistics (no image yet, or adapters without gates)", ha="center", va="center"
        )
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def score_text(model: str, score: float) -> str:
    return f"**{model}** — predicted IoU {score:.3f}"


# ---- Gradio wiring -------------------------------------------------------------------------------

# What a page update returns, in this order: state, canvas, SAM panel, SAM score, GaRA panel,
# GaRA score, rank chart, status message.
_EMPTY_SCORES = ("**SAM (frozen)**", "**GaRA-SAM**")


def render(app: WebApp, state: PageState, message: str = "") -> tuple[Any, ...]:
    """Everything the page shows for `state`: the prompted canvas and, given a prompt, both masks."""
    if state.image is None:
        return (state, None, None, _EMPTY_SCORES[0], None, _EMPTY_SCORES[1], None, message)
    prompt = state.prompt()
    prompts = [prompt] if prompt else []
    canvas = overlay(state.image, prompts=prompts, pending_corner=state.corner)
    if prompt is None:
        hint = message or "Click on the image to place a prompt."
        return (state, canvas, None, _EMPTY_SCORES[0], None, _EMPTY_SCORES[1], None, hint)
    result = app.compare(state.image, prompt)
    return (
        state,
        canvas,
        overlay(state.image, [result.frozen_mask], prompts),
        score_text("SAM (frozen)", result.frozen_score),
        overlay(state.image, [result.gara_mask], prompts),
        score_text("GaRA-SAM", result.gara_score),
        rank_chart(result.gates, app.rank_limits),
        message,
    )


def error_message(err: Exception, where: str = "web page") -> str:
    """What the page shows for a failed request: a user error's message without server paths, or a
    pointer to the server's log (where the traceback goes) for anything else."""
    if isinstance(err, GarasamError):
        _LOG.warning("%s: %s", where, err)
        return f"**Error:** {public_message(str(err))}"
    _LOG.error("%s: unexpected error", where, exc_info=err)
    return "**Error:** the server could not process this request (details in its log)"


def _guarded(app: WebApp, handler: Any) -> Any:
    """Turn a user error into a visible message; the previous page state stays."""

    @functools.wraps(handler)  # keeps the signature and annotations Gradio inspects
    def run(*args: Any) -> tuple[Any, ...]:
        state = next((a for a in args if isinstance(a, PageState)), PageState())
        try:
            return handler(*args)
        except Exception as err:  # whatever fails, the page gets a message, never a trace or a path
            message = error_message(err)
            try:
                return render(app, state, message)
            except GarasamError:  # the stored prompt itself is the problem: drop it
                return render(app, state.cleared(), message)

    return run


def build_page(
    app: WebApp, limits: ServerLimits = ServerLimits(), tabs: Sequence[tuple[str, Callable[[], None]]] = ()
) -> gr.Blocks:
    """The Gradio page: the image tab (inputs on the left, both models' masks and the rank chart on
    the right), then each of `tabs` (a title and a function that builds its widgets, e.g. the video
    tab, which lives in `garasam.video.web` above this layer). Launch it with
    `state_session_capacity=limits.max_sessions` (see `garasam.commands.serve`)."""
    gr = _import_gradio()
    suites = list(SUITES)

    def with_image(image: np.ndarray, suite: str, name: str, severity: float) -> tuple[Any, ...]:
        original = fit_working_size(image)
        new = PageState(original=original, image=degrade(original, suite, name, int(severity)))
        return render(app, new)

    def on_upload(
        path: str | None, state: PageState, suite: str, name: str, severity: float
    ) -> tuple[Any, ...]:
        if path is None:
            return render(app, state)
        return with_image(load_upload(path), suite, name, severity)

    def on_sample(
        sample: str | None, state: PageState, suite: str, name: str, severity: float
    ) -> tuple[Any, ...]:
        if not sample:
            return render(app, state)
        return with_image(load_sample(sample), suite, name, severity)

    def on_degradation(state: PageState, suite: str, name: str, severity: float) -> tuple[Any, ...]:
        if state.original is None:
            return render(app, state)
        return render(
            app, dataclasses.replace(state, image=degrade(state.original, suite, name, int(severity)))
        )

    def on_click(state: PageState, mode: str, evt: Any) -> tuple[Any, ...]:
        x, y = evt.index
        new, message = add_click(state, float(x), float(y), mode)
        return render(app, new, message)

    on_click.__annotations__["evt"] = gr.SelectData  # Gradio passes click data to a parameter typed so

    def on_suite(suite: str) -> Any:
        return gr.update(choices=degradation_names(suite), value="clean")

    def on_name(suite: str, name: str) -> Any:
        return gr.update(**severity_slider(suite, name))

    with gr.Blocks(title="GaRA-SAM", analytics_enabled=False) as page:
        gr.Markdown("# GaRA-SAM vs SAM\nSegment a degraded image with the frozen SAM and with GaRA-SAM.")
        with gr.Tab("Image", elem_id="image-tab"):
            gr.Markdown("\n".join(f"- {note}" for note in app.notes), elem_id="notes")
            state = gr.State(PageState(), time_to_live=limits.session_ttl_s)
            with gr.Row():
                with gr.Column(scale=1):
                    upload = gr.File(
                        label="Upload an image (max 20 MB, 4096 px)",
                        file_types=["image"],
                        type="filepath",
                        elem_id="upload",
                    )
                    sample = gr.Dropdown(
                        sample_names(), value=None, label="…or pick a sample", elem_id="sample"
                    )
                    suite = gr.Dropdown(suites, value=suites[0], label="Degradation suite", elem_id="suite")
                    name = gr.Dropdown(
                        degradation_names(suites[0]),
                        value="clean",
                        label="Degradation",
                        elem_id="degradation",
                    )
                    severity = gr.Slider(
                        0, 1, value=0, step=1, label="Severity", interactive=False, elem_id="severity"
                    )
                    mode = gr.Radio(list(MODES), value=POSITIVE, label="Click mode", elem_id="mode")
                    gr.Markdown("Boxes: Gradio has no box tool, so click two opposite corners.")
                    clear = gr.Button("Clear prompts", elem_id="clear")
                    status = gr.Markdown(elem_id="status")
                with gr.Column(scale=2):
                    canvas = gr.Image(
                        label="Degraded image: click to prompt", interactive=False, elem_id="canvas"
                    )
                    with gr.Row():
                        with gr.Column():
                            frozen_panel = gr.Image(
                                label="SAM (frozen)", interactive=False, elem_id="sam-mask"
                            )
                            frozen_score = gr.Markdown(_EMPTY_SCORES[0], elem_id="sam-score")
                        with gr.Column():
                            gara_panel = gr.Image(label="GaRA-SAM", interactive=False, elem_id="gara-mask")
                            gara_score = gr.Markdown(_EMPTY_SCORES[1], elem_id="gara-score")
                    chart = gr.Image(
                        label="Active rank per encoder block", interactive=False, elem_id="rank-chart"
                    )
            outputs = [state, canvas, frozen_panel, frozen_score, gara_panel, gara_score, chart, status]
            degradation_inputs = [state, suite, name, severity]
            upload.upload(_guarded(app, on_upload), [upload, *degradation_inputs], outputs)
            sample.change(_guarded(app, on_sample), [sample, *degradation_inputs], outputs)
            suite.change(on_suite, suite, name)
            name.change(on_name, [suite, name], severity).then(
                _guarded(app, on_degradation), degradation_inputs, outputs
            )
            severity.release(_guarded(app, on_degradation), degradation_inputs, outputs)
            canvas.select(_guarded(app, on_click), [state, mode], outputs)
            clear.click(_guarded(app, lambda s: render(app, s.cleared())), state, outputs)
        for title, build in tabs:
            with gr.Tab(title, elem_id=f"{title.lower()}-tab"):
                build()
    return page


def _import_gradio() -> Any:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio
    except ImportError as err:
        raise ConfigError("the web page needs Gradio: pip install 'garasam[web]'") from err
    return gradio
