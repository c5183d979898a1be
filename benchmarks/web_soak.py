"""Soak test of `garasam serve`: many visitors, one after another; does the server stay bounded?

    python benchmarks/web_soak.py --sessions 1000 --every 100

Starts `garasam serve` on 127.0.0.1 (a free port, the bundled tiny SAM, its own temp folder) and
plays visitors through Gradio's HTTP queue protocol, as the page's JavaScript does: each visitor is a
new session that uploads an image and clicks a point (both models segment it). Every `--every`
sessions it records the server's resident memory (RSS) and the size of its temp folder (uploads and
the PNGs Gradio writes for each answer). Extra arguments after `--` go to `garasam serve` (e.g.
`-- --session-ttl 60 --max-sessions 50`). Prints a Markdown table; `--json` writes the rows too.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

API = "/gradio_api"


@dataclass
class Row:
    sessions: int
    seconds: float
    rss_mib: float
    temp_mib: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident memory of process `pid` (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def folder_mib(folder: Path) -> float:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(FileNotFoundError):  # swept while we walked
                total += os.lstat(os.path.join(root, name)).st_size
    return total / 2**20


class Visitor:
    """One browser session, speaking Gradio's queue protocol (sse_v3) over HTTP."""

    def __init__(self, client: httpx.Client, config: dict) -> None:
        self.client = client
        self.session = uuid.uuid4().hex[:11]
        self.events = {d["api_name"]: d for d in config["dependencies"]}

    def upload(self, image: np.ndarray) -> None:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        files = {"files": ("visitor.png", buffer.getvalue(), "image/png")}
        path = self.client.post(f"{API}/upload", files=files).raise_for_status().json()[0]
        file_data = {"path": path, "orig_name": "visitor.png", "meta": {"_type": "gradio.FileData"}}
        self._run("on_upload", [file_data, None, "robustseg", "clean", 0])

    def click(self, x: int, y: int) -> None:
        event = {"index": [x, y], "value": None, "selected": True}
        self._run("on_click", [None, "positive point"], event)

    def _run(self, name: str, data: list, event_data: dict | None = None) -> None:
        dependency = self.events[name]
        payload = {
            "data": data,
            "event_data": event_data,
            "fn_index": dependency["id"],
            "trigger_id": dependency["targets"][0][0],
            "session_hash": self.session,
        }
        self.client.post(f"{API}/queue/join", json=payload).raise_for_status()
        with self.client.stream("GET", f"{API}/queue/data", params={"session_hash": self.session}) as stream:
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("msg") == "process_completed":
                    if not message.get("success", False):
                        raise RuntimeError(f"{name} failed on the server: {message.get('output')}")
                    return
        raise RuntimeError(f"{name}: the stream ended before the event completed")


def start_server(temp_root: Path, port: int, serve_args: list[str]) -> subprocess.Popen:
    """`garasam serve` with its temp files under `temp_root`; returns once it answers."""
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"} | {"TMPDIR": str(temp_root)}
    command = [sys.executable, "-m", "garasam.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--device", "cpu", *serve_args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = server.stdout.readline()
    if not re.search(r"http://127\.0\.0\.1:\d+", line):
        server.kill()
        raise RuntimeError(f"garasam serve did not start: {line}{server.stdout.read()}")
    for _ in range(600):  # the URL may be printed a moment before the socket answers
        try:
            httpx.get(f"http://127.0.0.1:{port}/config", timeout=5).raise_for_status()
            return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("garasam serve printed its URL but did not answer within 60 s")


def soak(sessions: int, every: int, serve_args: list[str], seed: int = 0) -> list[Row]:
    """Play `sessions` visitors against a fresh server; a Row every `every` sessions (and at 0)."""
    rng = np.random.default_rng(seed)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="garasam-soak-") as temp:
        server = start_server(Path(temp), port, serve_args)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                config = client.get("/config").raise_for_status().json()
                rows = [Row(0, 0.0, rss_mib(server.pid), folder_mib(Path(temp)))]
                start = time.perf_counter()
                for index in range(1, sessions + 1):
                    visitor = Visitor(client, config)
                    side = int(rng.integers(200, 400))
                    visitor.upload(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
                    visitor.click(side // 2, side // 2)
                    if index % every == 0 or index == sessions:
                        elapsed = time.perf_counter() - start
                        rows.append(Row(index, elapsed, rss_mib(server.pid), folder_mib(Path(temp))))
            return rows
        finally:
            server.terminate()
            server.wait(timeout=30)


def markdown(rows: list[Row]) -> str:
    lines = ["| sessions | seconds | server RSS (MiB) | temp folder (MiB) |", "|---:|---:|---:|---:|"]
    lines += [f"| {r.sessions} | {r.seconds:.0f} | {r.rss_mib:.0f} | {r.temp_mib:.1f} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    serve_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(own)
    rows = soak(args.sessions, args.every, serve_args, args.seed)
    print(f"garasam serve {' '.join(serve_args)}: {args.sessions} sessions (upload + one click each)")
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
