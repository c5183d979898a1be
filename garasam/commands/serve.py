"""`garasam serve`: the web page comparing SAM and GaRA-SAM, on this machine."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from garasam.argtypes import device, port
from garasam.models import MODEL_TYPES
from garasam.runtime import resolve_device

if TYPE_CHECKING:
    pass
from garasam.predict.web import (
    MAX_UPLOAD_BYTES,
    WebApp,
    build_page,
)


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


def run(args: argparse.Namespace) -> int:
    app = WebApp.create(
        args.checkpoint, args.adapters, args.model_type, resolve_device(args.device), args.random_weights
    )
    page = build_page(app)
    print(f"garasam serve: http://{args.host}:{args.port}", flush=True)
    page.queue(default_concurrency_limit=1).launch(
        server_name=args.host,
        server_port=args.port,
        max_file_size=MAX_UPLOAD_BYTES,
        show_error=True,
        quiet=True,
    )
    return 0
