"""Item 4: the dashboard's and the command line's costs with 50,000 runs stored.

The store: 50,000 finished runs (90% succeeded, 7% failed with an error, 3% cancelled, two
kinds, two queues, built through the Store API) plus 100 waiting, copied to disk.
- one dashboard refresh (queries plus widget model): measured by `bench_dashboard.py`,
  which the dashboard's author maintains, on this same store;
- a reconcile pass with nothing to repair: no run processing, and one run processing
  under a live worker that holds the executor lock (what a refresh meets during a run);
- `runtool list` as a command vs `runtool --help` (interpreter start-up), interleaved;
- the store's size on disk per run.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import re
import time
from pathlib import Path
from typing import Any

import psutil

import common
from common import say


def _timed(fn: Any, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _reconcile(home: Path, repeat: int) -> dict[str, Any]:
    from runtool import RunQueue
    from runtool.models import Claimant

    q = RunQueue(home, user="bench")
    q.reconcile()  # a first pass opens files and fills caches
    idle = _timed(q.reconcile, repeat)
    # One run processing, claimed by this process as a live worker holding the executor lock.
    me = psutil.Process()
    assert q.lock.try_acquire("bench worker")
    run = q.store.claim([], Claimant("bench", me.pid, me.create_time(), "bench"))
    assert run is not None
    def repair_nothing() -> None:
        if q.reconcile():
            raise RuntimeError(f"reconcile repaired run {run.id}, which a live worker holds")

    try:
        busy = _timed(repair_nothing, repeat)
        assert q.get(run.id).status.value == "processing"
    finally:
        q.lock.release()
        q.close()
    return {"nothing processing": common.summary(idle), "one run processing (live worker)": common.summary(busy)}


def _queries(home: Path, repeat: int) -> dict[str, Any]:
    from runtool import RunQueue

    q = RunQueue(home, user="bench")
    out = {
        "counts()": common.summary(_timed(q.counts, repeat)),
        "list(limit=50)": common.summary(_timed(lambda: q.list(limit=50), repeat)),
        "list(status=failed, limit=50)": common.summary(_timed(lambda: q.list(status="failed", limit=50), repeat)),
        "count()": common.summary(_timed(q.count, repeat)),
    }
    q.close()
    return out


def _cli(home: Path, rounds: int) -> dict[str, Any]:
    env = dict(os.environ, RUNTOOL_USER="bench")
    res = common.interleaved(rounds, {
        "runtool --help": lambda: common.run_cmd([common.RUNTOOL, "--help"], env=env),
        "runtool list": lambda: common.run_cmd([common.RUNTOOL, "--home", str(home), "list"], env=env),
        "runtool list --json": lambda: common.run_cmd([common.RUNTOOL, "--home", str(home), "list", "--json"], env=env),
    })
    out = {name: common.summary(v) for name, v in res.items()}
    out["ratio list/help"] = out["runtool list"]["median"] / out["runtool --help"]["median"]
    return out


_LINE = re.compile(r"refresh, (?P<case>.+?)\s+(?P<runs>\d+) runs: median\s+(?P<median>[\d.]+) ms\s+max\s+(?P<max>[\d.]+) ms(?P<note>.*)")


def _refresh(home: Path, repeat: int) -> dict[str, Any]:
    """Call the dashboard author's benchmark on this store; 'pending' if it cannot run yet."""
    try:
        bench = importlib.import_module("bench_dashboard")
        if hasattr(bench, "measure"):
            cases = dict(bench.measure(home, repeat))
            if hasattr(bench, "measure_in_kernel"):
                try:
                    cases.update(bench.measure_in_kernel(home, repeat))
                except Exception as exc:  # noqa: BLE001 - the in-process figures still stand
                    cases["kernel"] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
        else:  # an older bench_dashboard.py that only prints its figures
            text = io.StringIO()
            with contextlib.redirect_stdout(text):
                bench.report(home, repeat)
            cases = {m["case"].strip(): {"median_ms": float(m["median"]), "max_ms": float(m["max"]),
                                         "note": m["note"].strip(" ()")}
                     for m in map(_LINE.match, text.getvalue().splitlines()) if m}
        cases = {k: v for k, v in cases.items() if "median_ms" in v}
        if not cases:
            return {"status": "pending", "reason": "bench_dashboard.py gave no figures"}
        return {"status": "measured", "cases": cases, "wall": _refresh_wall(home, repeat)}
    except Exception as exc:  # noqa: BLE001 - the dashboard is being written: report, do not fail
        return {"status": "pending", "reason": f"{type(exc).__name__}: {exc}"[:300]}


def refresh_ms(refresh: dict[str, Any]) -> float | None:
    """The slowest median refresh among the cases (opening the dashboard is not a refresh)."""
    if refresh.get("status") != "measured":
        return None
    return max(v["median_ms"] for k, v in refresh["cases"].items() if "opening" not in k)


def _refresh_wall(home: Path, repeat: int) -> dict[str, Any]:
    """Wall-clock time of opening a Dashboard (it reconciles and refreshes) and of a refresh."""
    try:
        from runtool.widgets import Dashboard

        t0 = time.perf_counter()
        dash = Dashboard(home, user="bench", refresh_interval=None)
        opened = time.perf_counter() - t0
        refresh = common.summary(_timed(dash.refresh, repeat))
        dash.close()
        return {"open_s": opened, "refresh": refresh}
    except Exception as exc:  # noqa: BLE001
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}


def run(quick: bool) -> dict[str, Any]:
    from runtool import RunQueue, lifecycle

    finished, waiting, repeat, rounds = (5_000, 100, 20, 5) if quick else (50_000, 100, 50, 10)
    say(f"scale: {finished} finished + {waiting} waiting runs")
    with common.scratch("scale") as folder:
        home = folder / "home"
        RunQueue(home, user="bench").close()
        common.copy_store(common.runtool_fixture(finished), home / "runtool.db")
        q = RunQueue(home, user="bench")
        for i in range(waiting):
            lifecycle.submit(q.store, common.new_run(finished + i), "bench")
        total = q.count()
        q.close()
        db = home / "runtool.db"
        size = sum(Path(str(db) + s).stat().st_size for s in ("", "-wal") if Path(str(db) + s).exists())
        reconcile = _reconcile(home, repeat)
        say("  reconcile: " + ", ".join(f"{k} {v['median'] * 1000:.2f} ms" for k, v in reconcile.items()))
        queries = _queries(home, repeat)
        cli = _cli(home, rounds)
        say(f"  runtool list {cli['runtool list']['median'] * 1000:.0f} ms vs --help "
            f"{cli['runtool --help']['median'] * 1000:.0f} ms: {cli['ratio list/help']:.2f}x")
        refresh = _refresh(home, 10)
        say(f"  dashboard refresh: {refresh['status']} {refresh.get('reason', '')}"
            + "".join(f"; {k} {v['median_ms']} ms" for k, v in refresh.get("cases", {}).items()))
    rec_worst = max(v["median"] for v in reconcile.values())
    slowest = refresh_ms(refresh)
    return {
        "finished": finished, "waiting": waiting, "total_runs": total, "repeat": repeat, "rounds": rounds,
        "db_bytes": size, "bytes_per_run": size / total, "fixture_build_s": common.fixture_build_seconds(finished),
        "reconcile": reconcile, "queries": queries, "cli": cli, "refresh": refresh,
        "targets": {
            "refresh under 100 ms": None if slowest is None else slowest < 100,
            "reconcile under 20 ms": rec_worst < 0.020,
            "list under 1.5x --help": cli["ratio list/help"] < 1.5,
        },
    }


if __name__ == "__main__":
    args = common.main_args(__doc__ or "")
    try:
        common.save("scale", run(args.quick))
    finally:
        common.stop_all()
