"""How long one dashboard refresh takes with 50,000 runs stored.

Fills a temporary home through the Store API (no SQL outside runtool/queue.py): mostly
finished runs, some failed with an error, some cancelled, a few waiting and scheduled,
then times `Dashboard.refresh()` (queries plus widget updates, no browser or kernel).

    python benchmarks/bench_dashboard.py [--runs 50000] [--home DIR] [--repeat 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

from runtool.api import RunQueue
from runtool.models import Status

KINDS = ("detection", "training", "export")
ERROR = {"type": "ValueError", "message": "score_threshold must be in [0, 1], got 1.5", "cell": 3,
         "traceback": "Traceback (most recent call last):\n  ...\nValueError: score_threshold"}


def _fields(i: int, not_before: float | None = None) -> dict:
    kind = KINDS[i % len(KINDS)]
    return {
        "notebook": f"/data/notebooks/{kind}.ipynb", "kind": kind, "queue": kind if i % 2 else "default",
        "priority": 0, "parameters": {"score_threshold": 0.5, "scene_seed": i, "n_scenes": 8},
        "tags": {"detectionRunId": f"d{i:06d}"}, "max_attempts": 1, "timeout_s": None,
        "kernel": "python3", "output_copy": None, "not_before": not_before, "after_id": None,
        "after_on": None,
    }


def fill(home: Path, runs: int) -> None:
    """`runs` runs: 90% succeeded, 6% failed, 3% cancelled, the rest waiting or scheduled."""
    q = RunQueue(home, user="bench")
    store, me = q.store, psutil.Process()
    store.pause("*", "bench")  # so the waiting runs below are never claimed
    finished = runs - max(10, runs // 100)
    store.resume(None)
    for i in range(finished):
        run = store.insert(_fields(i), by="bench")
        share = i % 100
        if share < 3:
            store.transition(run.id, [Status.WAITING], Status.CANCELLED, "bench", "cancelled", "cancel")
            continue
        claimed = store.claim(None, "bench:1", me.pid, me.create_time())
        assert claimed is not None and claimed.id == run.id
        if share < 9:
            store.transition(run.id, [Status.PROCESSING], Status.FAILED, "bench", "failed",
                             "record failure", error=ERROR)
        else:
            store.transition(run.id, [Status.PROCESSING], Status.SUCCEEDED, "bench", "ok",
                             "record success")
    for i in range(finished, runs):
        store.insert(_fields(i, time.time() + 3600 if i % 2 else None), by="bench")
    q.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--home", help="reuse (or fill once) this home instead of a temporary one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rt-bench-dash-") as tmp:
        home = Path(args.home or tmp)
        if not (home / "runtool.db").exists() or RunQueue(home).count() == 0:
            started = time.perf_counter()
            fill(home, args.runs)
            print(f"filled {args.runs} runs in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        return report(home, args.repeat)


def report(home: Path, repeat: int) -> int:
    from runtool.widgets import Dashboard

    os.environ.setdefault("RUNTOOL_USER", "bench")
    dash = Dashboard(home, refresh_interval=None)
    stored = dash.queue.count()
    cases = {"no filter": {}, "status failed": {"status": "failed"},
             "text search": {"text": "d04"}, "page 100": {"page": 99}}
    for name, filters in cases.items():
        dash.set_filters(**filters)
        times = []
        for _ in range(repeat):
            started = time.process_time()
            dash.refresh()
            times.append((time.process_time() - started) * 1000)
        print(f"refresh, {name:<13} {stored} runs: median {statistics.median(times):6.1f} ms"
              f"  max {max(times):6.1f} ms (kernel CPU time, {repeat} refreshes)")
    dash.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
