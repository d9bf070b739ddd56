"""The dashboard at a million runs, and what its indexes cost the claims.

1. A home with 1,000,000 runs (benchmarks/million.py, built in SQL): kernel CPU time of
   opening a Dashboard, a refresh, paging, each filter and text searches (medians of
   several refreshes), in this process and in a real ipykernel; and the table filtered to one
   kind (333,333 runs) sorted by a metric column (a walk of run_metrics' index).
2. Side by side, interleaved rounds: submit and claim+complete (recording two metrics) on a
   home with the derived tables (counts per status, the FTS5 search index, run_metrics, kept
   by triggers), on the same home without run_metrics' triggers, and without any trigger, as
   runtool stored runs before them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import common
import million
from bench_dashboard import measure_in_kernel
from common import say

METRIC_TRIGGERS = ("runs_measured", "runs_unmeasured", "runs_remeasured")
TRIGGERS = ("runs_counted", "runs_uncounted", "runs_recounted", "runs_indexed", "runs_unindexed", "runs_reindexed",
            *METRIC_TRIGGERS)
#: Variant of the write benchmark -> the triggers it drops.
VARIANTS = {"with triggers": (), "without run_metrics": METRIC_TRIGGERS, "without": TRIGGERS}


def refresh_cases(home: Path, repeat: int) -> dict[str, dict[str, float]]:
    """Median and max kernel CPU time (ms) per dashboard case, in this process."""
    from runtool.widgets import Dashboard

    started = time.process_time()
    dash = Dashboard(home, user="bench", refresh_interval=None)
    results = {"opening (reconcile, options, first page)": [(time.process_time() - started) * 1000]}
    deep = iter(range(25_000, 26_000))  # pages around the 500,000th run
    pages = iter(range(1, 1000))
    cases: dict[str, Any] = {
        "refresh, no filter": (lambda: dash.set_filters(), dash.refresh),
        "next page each time": (lambda: None, lambda: dash.set_filters(page=next(pages))),
        "a page 500,000 runs back": (lambda: None, lambda: dash.set_filters(page=next(deep))),
        "status failed": (lambda: dash.set_filters(status="failed"), dash.refresh),
        "status waiting": (lambda: dash.set_filters(status="waiting"), dash.refresh),
        "kind export": (lambda: dash.set_filters(kind="export"), dash.refresh),
        "queue training": (lambda: dash.set_filters(queue="training"), dash.refresh),
        "text: a word in every run": (lambda: dash.set_filters(text="score"), dash.refresh),
        "text: one run's tag": (lambda: dash.set_filters(text="d0400042"), dash.refresh),
        "text: a prefix (d04004*)": (lambda: dash.set_filters(text="d04004*"), dash.refresh),
        "text: a run id": (lambda: dash.set_filters(text="400042"), dash.refresh),
        "text + kind, no match": (lambda: dash.set_filters(text="detection", kind="export"), dash.refresh),
        "text + status failed": (lambda: dash.set_filters(text="score", status="failed"), dash.refresh),
        # not sorted: what the pager's count of a kind's failed runs costs alone (the sorted
        # case below pays it too)
        "kind detection + status failed": (lambda: dash.set_filters(kind="detection", status="failed"),
                                           dash.refresh),
    }
    sorted_pages = iter(range(1, 1000))
    # A click on a metric's header (each click reverses the order): the store sorts the kind's
    # runs. A refresh with nothing changed reuses the sorted page (widgets_table.RunsTable._read_page).
    click = lambda: dash.sort_by("precision")  # noqa: E731
    cases.update({
        "sorted: a header click (kind detection by precision)": (
            lambda: (dash.set_filters(kind="detection"), _sort(dash, "detection", "precision")), click),
        "sorted: refresh, nothing changed": (lambda: _sort(dash, "detection", "precision"), dash.refresh),
        "sorted: next page each time": (lambda: None, lambda: dash.set_filters(kind="detection",
                                                                             page=next(sorted_pages))),
        "sorted: a header click + status failed": (
            lambda: (dash.set_filters(kind="detection", status="failed"), _sort(dash, "detection", "precision")),
            click),
        "sorted: a header click + text, a prefix (d04004*)": (
            lambda: (dash.set_filters(kind="detection", text="d04004*"), _sort(dash, "detection", "precision")),
            click),
        "sorted: a header click + queue default": (
            lambda: (dash.set_filters(kind="detection", queue="default"), _sort(dash, "detection", "precision")),
            click),
        "sorted: the last page (runs without the metric)": (
            lambda: (dash.set_filters(kind="detection"), _sort(dash, "detection", "precision")),
            lambda: dash.set_filters(kind="detection", page=last_page)),
    })
    last_page = (dash.queue.count(kind="detection") - 1) // dash.table.page_size
    results.update(common.time_cases(cases, repeat, time.process_time))
    dash.close()
    return {name: common.median_max(t) for name, t in results.items()}


def _sort(dash: Any, kind: str, metric: str) -> None:
    """Filter to `kind` and sort by `metric`, highest first (as a click on its column's header)."""
    if dash.sort != (metric, True):
        dash.sort_by(metric)
    assert dash.sort == (metric, True), (dash.metric_columns, dash.sort)


def _ops(home: Path, n: int) -> tuple[float, float, float, float]:
    """Submit n runs, then claim+complete them: (submit/s, cycle/s, submit CPU ms, cycle CPU ms)."""
    from runtool import RunQueue, lifecycle
    from runtool.models import Change, Status

    q = RunQueue(home, user="bench")
    store, me = q.store, common.claimant()
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        lifecycle.submit(store, common.new_run(i), "bench")
    submit = (n / (time.perf_counter() - wall), (time.process_time() - cpu) * 1000 / n)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        run = store.claim([], me)
        assert run is not None
        done = Change(Status.SUCCEEDED, "bench", "done", metrics={"precision": 0.8 + i % 17 / 100, "recall": 0.7})
        lifecycle.change(store, run.id, [Status.PROCESSING], done, "record success", attempt=run.attempt)
    cycle = (n / (time.perf_counter() - wall), (time.process_time() - cpu) * 1000 / n)
    q.close()
    return submit[0], cycle[0], submit[1], cycle[1]


def claims_side_by_side(rounds: int, n: int, finished: int) -> dict[str, Any]:
    """Both variants on copies of one home with `finished` runs, in alternating order."""
    variants: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in VARIANTS}
    with common.scratch("million-claims") as folder:
        base = folder / "base"
        million.build(base, finished, waiting=0)
        for r in range(rounds):
            order = list(variants) if r % 2 == 0 else list(variants)[::-1]
            for name in order:
                home = folder / f"{name.replace(' ', '-')}-{r}"
                shutil.copytree(base, home)
                conn = sqlite3.connect(home / "runtool.db")
                for trigger in VARIANTS[name]:
                    conn.execute(f"DROP TRIGGER {trigger}")
                conn.close()
                variants[name].append(_ops(home, n))
                shutil.rmtree(home)
    med = {name: [statistics.median(x[i] for x in v) for i in range(4)] for name, v in variants.items()}
    return {
        "rounds": rounds, "ops": n, "finished": finished,
        "submit_per_s": {k: v[0] for k, v in med.items()}, "cycle_per_s": {k: v[1] for k, v in med.items()},
        "submit_cpu_ms": {k: v[2] for k, v in med.items()}, "cycle_cpu_ms": {k: v[3] for k, v in med.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 runs, fewer rounds")
    parser.add_argument("--runs", type=int)
    args = parser.parse_args()
    runs = args.runs or (100_000 if args.quick else 1_000_000)
    repeat, rounds = (5, 3) if args.quick else (10, 6)
    with common.scratch("million", common.FAST_SCRATCH) as folder:
        home = folder / "home"
        build_s = million.build(home, runs)
        size = (home / "runtool.db").stat().st_size
        say(f"million: built {runs:,} runs in {build_s:.1f} s ({size / 1e6:.0f} MB)")
        cases = refresh_cases(home, repeat)
        for name, v in cases.items():
            say(f"  {name:<42} median {v['median_ms']:7.2f} ms  max {v['max_ms']:7.2f} ms")
        kernel = measure_in_kernel(home, repeat)
        for name, v in kernel.items():
            say(f"  {name:<42} median {v['median_ms']:7.2f} ms  max {v['max_ms']:7.2f} ms")
    claims = claims_side_by_side(rounds, 300, 20_000)
    for what in ("submit_per_s", "cycle_per_s", "submit_cpu_ms", "cycle_cpu_ms"):
        say(f"  {what:<14} " + "  ".join(f"{k} {v:.2f}" for k, v in claims[what].items()))
    worst = max(v["median_ms"] for k, v in cases.items() if not k.startswith(("opening", "sorted")))
    slowest_sort = max(v["median_ms"] for k, v in cases.items() if k.startswith("sorted"))
    common.save("million", {
        "runs": runs, "build_s": build_s, "db_bytes": size, "repeat": repeat, "cases": cases,
        "kernel": kernel, "claims": claims, "worst_refresh_ms": worst, "slowest_sorted_ms": slowest_sort,
        "targets": {"every refresh under 50 ms": worst < 50, "sorted by a metric under 50 ms": slowest_sort < 50},
    })
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    sys.exit(main())
