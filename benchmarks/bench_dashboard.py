"""How long one dashboard refresh takes with 50,000 runs stored.

Fills a temporary home through the Store API (no SQL outside runtool/queue.py): mostly
finished runs, some failed with an error, some cancelled, a few waiting and scheduled,
then times `Dashboard.refresh()` (queries plus widget updates, no browser or kernel).

    python benchmarks/bench_dashboard.py [--runs 50000] [--home DIR] [--repeat 10]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from runtool import lifecycle
from runtool.api import RunQueue
from runtool.models import Change, Claimant, NewRun, Status

import common

KINDS = ("detection", "training", "export")
ERROR = {"type": "ValueError", "message": "score_threshold must be in [0, 1], got 1.5", "cell": 3,
         "traceback": "Traceback (most recent call last):\n  ...\nValueError: score_threshold"}


def _new(i: int, not_before: float | None = None) -> NewRun:
    kind = KINDS[i % len(KINDS)]
    return NewRun(
        notebook=f"/data/notebooks/{kind}.ipynb", kind=kind, queue=kind if i % 2 else "default",
        priority=0, parameters={"score_threshold": 0.5, "scene_seed": i, "n_scenes": 8},
        tags={"detectionRunId": f"d{i:06d}"}, max_attempts=1, kernel="python3", not_before=not_before,
    )


def fill(home: Path, runs: int) -> None:
    """`runs` runs: 90% succeeded, 6% failed, 3% cancelled, the rest waiting or scheduled."""
    q = RunQueue(home, user="bench")
    store, me = q.store, psutil.Process()
    store.pause("*", "bench")  # so the waiting runs below are never claimed
    finished = runs - max(10, runs // 100)
    store.resume(None)
    for i in range(finished):
        run = lifecycle.submit(store, _new(i), by="bench")
        share = i % 100
        if share < 3:
            lifecycle.change(store, run.id, [Status.WAITING], Change(Status.CANCELLED, "bench", "cancelled"),
                             "cancel")
            continue
        claimed = store.claim([], Claimant("bench:1", me.pid, me.create_time(), "bench"))
        assert claimed is not None and claimed.id == run.id
        if share < 9:
            lifecycle.change(store, run.id, [Status.PROCESSING], Change(Status.FAILED, "bench", "failed", ERROR),
                             "record failure")
        else:
            lifecycle.change(store, run.id, [Status.PROCESSING], Change(Status.SUCCEEDED, "bench", "ok"),
                             "record success")
    for i in range(finished, runs):
        lifecycle.submit(store, _new(i, time.time() + 3600 if i % 2 else None), by="bench")
    q.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--no-kernel", action="store_true", help="skip the measurement inside an ipykernel")
    parser.add_argument("--home", help="reuse (or fill once) this home instead of a temporary one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rt-bench-dash-") as tmp:
        home = Path(args.home or tmp)
        if not (home / "runtool.db").exists() or RunQueue(home).count() == 0:
            started = time.perf_counter()
            fill(home, args.runs)
            print(f"filled {args.runs} runs in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        return report(home, args.repeat, kernel=not args.no_kernel)


def measure(home: Path, repeat: int = 10, clock: Callable[[], float] = time.process_time,
            note: str = "kernel CPU time") -> dict[str, dict[str, float | int | str]]:
    """Median and max time of one refresh, per case, on the runs stored in `home`: this
    process's CPU time by default (`clock=time.perf_counter`: wall-clock)."""
    from runtool.widgets import Dashboard

    dash = Dashboard(home, user="bench", refresh_interval=None)
    stored = dash.queue.count()
    newest = dash.rows[0].id if dash.rows else None
    pages = iter(range(1, 10 * repeat + 1))
    cases = {
        "no filter": (lambda: dash.set_filters(), dash.refresh),
        "run selected": (lambda: dash.select(newest), dash.refresh),
        "status failed": (lambda: (dash.select(None), dash.set_filters(status="failed")), dash.refresh),
        "text search": (lambda: dash.set_filters(text="d04"), dash.refresh),
        # every refresh shows another page: all 20 rows are redrawn
        "new page each": (lambda: dash.set_filters(), lambda: dash.set_filters(page=next(pages))),
    }
    times = common.time_cases(cases, repeat, clock)
    dash.close()
    return {name: {**common.median_max(t), "runs": stored, "note": f"{note}, {repeat} refreshes"}
            for name, t in times.items()}


#: Runs inside a real ipykernel, where every widget change is serialized and sent on iopub.
_IN_KERNEL = """
import json, statistics, time
from runtool.widgets import Dashboard
started = time.process_time()
dash = Dashboard({home!r}, user="bench", refresh_interval=None)
opened = (time.process_time() - started) * 1000
def timed(step, n):
    times = []
    for _ in range(n):
        t = time.process_time(); step(); times.append((time.process_time() - t) * 1000)
    return statistics.median(times), max(times)
pages = iter(range(1, 1000))
out = {{"open": opened, "idle": timed(dash.refresh, {repeat}),
       "paging": timed(lambda: dash.set_filters(page=next(pages)), {repeat})}}
dash.close()
print("RESULT" + json.dumps(out))
"""


def measure_in_kernel(home: Path, repeat: int = 10) -> dict[str, dict[str, float | int | str]]:
    """The same in a real kernel (comm messages serialized and sent), as under Voila."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    printed: list[str] = []
    try:
        kc.execute_interactive(_IN_KERNEL.format(home=str(home), repeat=repeat), timeout=300,
                               output_hook=lambda msg: printed.append(msg["content"].get("text", "")))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    line = next(line for line in "".join(printed).splitlines() if line.startswith("RESULT"))
    found = json.loads(line[len("RESULT"):])
    note = f"in an ipykernel, kernel CPU time, {repeat} refreshes"
    return {
        "kernel, no filter": {"median_ms": round(found["idle"][0], 2), "max_ms": round(found["idle"][1], 2),
                              "note": note},
        "kernel, new page each": {"median_ms": round(found["paging"][0], 2),
                                  "max_ms": round(found["paging"][1], 2), "note": note},
        "kernel, opening": {"median_ms": round(found["open"], 2), "max_ms": round(found["open"], 2),
                            "note": "Dashboard(): widgets, reconcile, first refresh (once)"},
    }


def report(home: Path, repeat: int, kernel: bool = True) -> int:
    stored = RunQueue(home, user="bench").count()
    cases = measure(home, repeat)
    if kernel:
        cases.update(measure_in_kernel(home, repeat))
    for name, case in cases.items():
        print(f"refresh, {name:<22} {stored} runs: median {case['median_ms']:6.1f} ms"
              f"  max {case['max_ms']:6.1f} ms ({case['note']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
