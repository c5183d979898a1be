"""`garasam serve`: the web page comparing SAM and GaRA-SAM, on this machine."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import tempfile
from pathlib import Path

from garasam.argtypes import device, int_at_least, port, positive_float
from garasam.errors import ConfigError
from garasam.models import MODEL_TYPES
from garasam.models.registry import family_of
from garasam.predict.web import MAX_UPLOAD_BYTES, ServerLimits, Sweeper, WebApp, build_page
from garasam.video.web import VideoApp, build_video_tab

DEFAULTS = ServerLimits()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: localhost only)")
    parser.add_argument("--port", type=port, default=7860, help="TCP port of the page")
    parser.add_argument("--checkpoint", type=Path, help="SAM checkpoint; none: the bundled tiny SAM")
    parser.add_argument(
        "--adapters", type=Path, help="GaRA adapter folder; none: bundled demo or zero-init GaRA"
    )
    parser.add_argument(
        "--model-type",
        choices=sorted(MODEL_TYPES),
        help="SAM backbone (default: from the adapters, else tiny)",
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="allow vit_b/l/h without --checkpoint (random weights: for timing and tests only)",
    )
    parser.add_argument("--device", type=device, default="auto", help="auto, cpu, cuda, cuda:N or mps")
    video = parser.add_argument_group("the video tab (SAM 2.1 and GaRA-SAM 2.1 tracking a clip)")
    video.add_argument(
        "--video-checkpoint", type=Path, help="SAM 2.1 checkpoint (default: the bundled sam2.1_tiny)"
    )
    video.add_argument(
        "--video-adapters", type=Path, help="adapter folder for SAM 2.1 (image or video adapters)"
    )
    video.add_argument(
        "--video-model-type",
        choices=sorted(t for t in MODEL_TYPES if family_of(t) == "sam2"),
        help="SAM 2.1 size (default: from the checkpoint or adapters, else sam2.1_tiny)",
    )
    video.add_argument("--no-video", action="store_true", help="serve the image tab only")
    limits = parser.add_argument_group("bounds of a long-running server")
    limits.add_argument(
        "--max-sessions",
        type=int_at_least(1, 100_000),
        default=DEFAULTS.max_sessions,
        help="browser sessions kept in memory; the least recently used goes first",
    )
    limits.add_argument(
        "--session-ttl",
        type=positive_float,
        default=DEFAULTS.session_ttl_s,
        help="seconds a session's image is kept after its last use",
    )
    limits.add_argument(
        "--file-ttl",
        type=positive_float,
        default=DEFAULTS.file_ttl_s,
        help="seconds uploads and the answers' images stay in the server's temp folder",
    )


def check_address(host: str, port_number: int) -> None:
    """Bind the address once before the model loads: a busy port or an unknown host is one line,
    not a URL printed as if serving followed by a traceback."""
    try:
        infos = socket.getaddrinfo(host, port_number, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise ConfigError(f"--host {host}: not an address of this machine ({err.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as err:
            raise ConfigError(f"cannot serve on {host}:{port_number}: {err.strerror}") from None


def run(args: argparse.Namespace) -> int:
    check_address(args.host, args.port)
    limits = ServerLimits(args.max_sessions, args.session_ttl, args.file_ttl)
    app = WebApp.create(args.checkpoint, args.adapters, args.model_type, args.device, args.random_weights)
    tabs = []
    if not args.no_video:
        video = VideoApp.create(
            args.video_checkpoint,
            args.video_adapters,
            args.video_model_type,
            args.device,
            args.random_weights,
        )
        tabs.append(("Video", lambda: build_video_tab(video, limits)))
    # the server's uploads and answers live in a folder of its own, swept while it runs and removed
    # when it stops (Gradio's default is one shared folder that only grows)
    temp = tempfile.mkdtemp(prefix="garasam-serve-", dir=os.environ.get("GRADIO_TEMP_DIR") or None)
    os.environ["GRADIO_TEMP_DIR"] = temp
    sweeper = Sweeper(temp, limits)
    sweeper.start()
    try:
        page = build_page(app, limits, tabs)
        try:
            page.queue(default_concurrency_limit=1).launch(
                server_name=args.host,
                server_port=args.port,
                max_file_size=MAX_UPLOAD_BYTES,
                show_error=True,
                quiet=True,
                state_session_capacity=limits.max_sessions,
                prevent_thread_lock=True,
            )
        except OSError as err:  # the port was taken while the model loaded
            raise ConfigError(f"cannot serve on {args.host}:{args.port}: {err}") from None
        print(f"garasam serve: http://{args.host}:{args.port}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            page.block_thread()
    finally:
        sweeper.stopped.set()
        shutil.rmtree(temp, ignore_errors=True)
    return 0
