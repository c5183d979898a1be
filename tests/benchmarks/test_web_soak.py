"""The web server soak test, short (issue 29, item 7): 120 visitors in about a minute on 127.0.0.1.

benchmarks/web_soak.py runs the long one (1,000 visitors, figures in docs/predict.md). Before the
bounds, every visitor added ~1 MiB of server RSS and ~0.5 MiB of temp files, for good."""

from __future__ import annotations

import statistics

import pytest

from benchmarks.web_soak import soak


@pytest.mark.slow
def test_memory_and_temp_files_stay_flat_over_many_sessions() -> None:
    limits = ["--max-sessions", "5", "--session-ttl", "2", "--file-ttl", "2"]
    rows = soak(sessions=120, every=10, serve_args=limits)
    early = statistics.median(r.rss_mib for r in rows if 20 <= r.sessions <= 50)
    late = statistics.median(r.rss_mib for r in rows[-4:])
    assert late - early < 40, [(r.sessions, round(r.rss_mib)) for r in rows]  # unbounded: ~+75 MiB
    assert max(r.temp_mib for r in rows[-6:]) < 20, [(r.sessions, r.temp_mib) for r in rows]  # ~+60
