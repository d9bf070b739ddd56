"""runtool's PostgreSQL store beside procrastinate, on one throwaway server, side by side.

    python benchmarks/bench_pg.py [--quick] [--rounds 5] [--n 1000] [--finished 50000]

One server (Debian's PostgreSQL via tests/pg.py) on the local disk with fsync on, and
both queues at their default, equal durability: every claim and completion is its own
committed transaction with synchronous_commit = on. Measured:
- claim+complete/s: N jobs queued, then claimed and marked done one by one, each library
  through its public calls (runtool: Store.claim + lifecycle.change; procrastinate:
  JobManager.fetch_job + finish_job). Interleaved rounds, a fresh database per round.
- claim latency with 50,000 finished jobs in the table, one job waiting (median of 200).
- pick-up latency: an idle `runtool worker` (poll 1 h: only LISTEN/NOTIFY can wake it in
  time) and 15 submissions; submit -> start from the record (both stamped by the server).
- dashboard refresh with 50,000 runs in PostgreSQL (bench_dashboard.measure).
Results: benchmarks/results/pg.json; the figures are copied into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import pg  # noqa: E402  # tests/pg.py: the throwaway server

from runtool import lifecycle  # noqa: E402
from runtool.models import Change, Status  # noqa: E402
from runtool.pg_store import PostgresStore  # noqa: E402

RUNS_DIR = Path(tempfile.gettempdir()) / "rt-bench-pg-runs"
#: libpq options that turn off waiting for the commit's fsync (for the statement's own cost).
NO_SYNC = "?options=-csynchronous_commit%3Doff"


# -- runtool -------------------------------------------------------------------------


def runtool_store(url: str) -> PostgresStore:
    return PostgresStore(url, RUNS_DIR)


def runtool_cycle(server: pg.Server, n: int) -> float:
    """claim+complete per second for n queued runs."""
    store = runtool_store(server.new_database())
    for i in range(n):
        lifecycle.submit(store, common.new_run(i), "bench")
    me = common.claimant()
    started = time.perf_counter()
    while (run := store.claim([], me)) is not None:
        lifecycle.change(store, run.id, [Status.PROCESSING], Change(Status.SUCCEEDED, "bench", "done"),
                         "record success", attempt=run.attempt)
    elapsed = time.perf_counter() - started
    store.close()
    return n / elapsed


def finished_dump(count: int, metrics: bool = False) -> dict[str, Any]:
    """`count` finished runs with their history, as `PostgresStore.load` takes them:
    90% succeeded, 6% failed, 3% cancelled, 1% waiting (when `waiting`), three kinds; with
    `metrics`, succeeded runs recorded precision and recall (as benchmarks/million.py's)."""
    now = time.time() - 86400
    runs, history = [], []
    kinds = ("detection", "training", "export")
    for i in range(1, count + 1):
        share = i % 100
        status = "cancelled" if share < 3 else "failed" if share < 9 else "succeeded"
        kind = kinds[i % 3]
        error = ('{"type": "ValueError", "message": "score_threshold must be in [0, 1]", "cell": 3,'
                 ' "traceback": "..."}') if status == "failed" else None
        t = now + i * 0.5
        runs.append({
            "id": i, "notebook": f"/data/notebooks/{kind}.ipynb", "kind": kind,
            "queue": kind if i % 2 else "default", "priority": 0, "status": status,
            "parameters": f'{{"score_threshold": 0.5, "scene_seed": {i}, "n_scenes": 8}}',
            "tags": f'{{"detectionRunId": "d{i:06d}"}}', "attempt": 0 if status == "cancelled" else 1,
            "max_attempts": 1, "timeout_s": None, "kernel": "python3", "output_copy": None,
            "created_at": t, "not_before": None, "started_at": None if status == "cancelled" else t + 0.1,
            "finished_at": t + 0.4, "heartbeat_at": None, "after_ids": None, "after_on": None, "ready": True,
            "submitted_by": "bench", "worker": "bench:1", "machine": "bench", "worker_pid": 1,
            "worker_ctime": 1.0, "runner_pid": None, "runner_ctime": None, "kernel_pid": None,
            "kernel_ctime": None, "progress_done": 8, "progress_total": 8, "error": error,
            "metrics": (f'{{"precision": {0.8 + i % 17 / 100}, "recall": {0.7 + i % 23 / 100}}}'
                        if metrics and status == "succeeded" else "{}"),
        })
        history.append({"run_id": i, "seq": 1, "status": "waiting", "at": t, "by": "bench",
                        "reason": "submitted", "error": None})
        if status != "cancelled":
            history.append({"run_id": i, "seq": 2, "status": "processing", "at": t + 0.1, "by": "bench:1",
                            "reason": "attempt 1 of 1", "error": None})
        history.append({"run_id": i, "seq": len(history) and (3 if status != "cancelled" else 2),
                        "status": status, "at": t + 0.4, "by": "bench:1", "reason": "done", "error": error})
    return {"runs": runs, "history": history, "run_parents": [], "paused": [], "last_id": count}


def runtool_claim_latency(url: str, samples: int) -> list[float]:
    store = runtool_store(url)
    me = common.claimant()
    times = []
    for i in range(samples):
        lifecycle.submit(store, common.new_run(i), "bench")
        started = time.perf_counter()
        run = store.claim([], me)
        times.append(time.perf_counter() - started)
        assert run is not None
        lifecycle.change(store, run.id, [Status.PROCESSING], Change(Status.SUCCEEDED, "bench", "done"),
                         "record success", attempt=run.attempt)
    store.close()
    return times


# -- procrastinate ---------------------------------------------------------------------


def _procrastinate_app(url: str) -> Any:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url, min_size=1, max_size=2))

    @app.task(name="bench", queue="default")
    def bench(n: int) -> None:  # never executed: the benchmark claims and completes itself
        del n

    return app


async def _procrastinate_cycle(url: str, n: int) -> float:
    from procrastinate.jobs import Status as PStatus

    app = _procrastinate_app(url)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        task = app.tasks["bench"]
        for i in range(n):
            await task.defer_async(n=i)
        worker_id = await app.job_manager.register_worker()
        started = time.perf_counter()
        while (job := await app.job_manager.fetch_job(queues=None, worker_id=worker_id)) is not None:
            await app.job_manager.finish_job(job, status=PStatus.SUCCEEDED, delete_job=False)
        elapsed = time.perf_counter() - started
        await app.job_manager.unregister_worker(worker_id)
    return n / elapsed


def procrastinate_cycle(server: pg.Server, n: int) -> float:
    return asyncio.run(_procrastinate_cycle(server.new_database(), n))


async def _procrastinate_claim_latency(url: str, finished: int, samples: int) -> list[float]:
    from procrastinate.jobs import Status as PStatus

    app = _procrastinate_app(url)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        # the peer's finished jobs go in by SQL: its API would take minutes for 50,000
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("""INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, attempts)
                            SELECT 'default', 'bench', jsonb_build_object('n', g), 'succeeded', 1
                            FROM generate_series(1, %s) g""", (finished,))
            conn.execute("ANALYZE procrastinate_jobs")
        task = app.tasks["bench"]
        worker_id = await app.job_manager.register_worker()
        times = []
        for i in range(samples):
            await task.defer_async(n=i)
            started = time.perf_counter()
            job = await app.job_manager.fetch_job(queues=None, worker_id=worker_id)
            times.append(time.perf_counter() - started)
            assert job is not None
            await app.job_manager.finish_job(job, status=PStatus.SUCCEEDED, delete_job=False)
        await app.job_manager.unregister_worker(worker_id)
    return times


# -- pick-up and dashboard -------------------------------------------------------------------


def pickup_latency(server: pg.Server, count: int) -> list[float]:
    from runtool import RunQueue

    with tempfile.TemporaryDirectory(prefix="rt-bench-pickup-") as tmp:
        home, url = Path(tmp) / "home", server.new_database()
        env = dict(os.environ, RUNTOOL_DATABASE_URL=url)
        notebook = common.trivial_notebook(Path(tmp))
        os.environ["RUNTOOL_DATABASE_URL"] = url
        try:
            q = RunQueue(home, user="bench")
            worker = common.spawn([sys.executable, "-m", "runtool", "--home", str(home), "worker", "--poll", "1h"],
                                  env=env)
            try:
                warm = q.submit(notebook)  # the worker's first run pays for imports
                common.wait_finished(q, warm.id)
                delays = []
                for _ in range(count):
                    run = q.submit(notebook)
                    done = common.wait_finished(q, run.id)
                    delays.append(done.started_at - done.created_at)
            finally:
                common.stop(worker)
            q.close()
        finally:
            del os.environ["RUNTOOL_DATABASE_URL"]
    return delays


def dashboard_refresh(url: str, repeat: int) -> dict[str, Any]:
    """Wall-clock time of one `Dashboard.refresh()` per case (bench_dashboard's cases): with
    a server, a refresh mostly waits for it, which CPU time would not show."""
    from bench_dashboard import measure

    with tempfile.TemporaryDirectory(prefix="rt-bench-dash-pg-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        (home / "runtool.toml").write_text(f'[store]\nurl = "{url}"\n')
        return measure(home, repeat, clock=time.perf_counter, note="wall-clock")


#: The record's sort before run_metrics: the metric cast out of the JSON of every run of the kind.
_CAST_SORT = """SELECT id FROM runs WHERE kind = %s ORDER BY
    CASE WHEN json_typeof(metrics::json -> %s) = 'number' THEN (metrics::json ->> %s)::numeric END
    DESC NULLS LAST, id DESC LIMIT 20"""


def sorted_lists(server: pg.Server, count: int, repeat: int) -> dict[str, Any]:
    """Wall-clock ms of `Store.list` sorted by a metric, one kind of `count` // 3 runs: the
    cases of bench_million's sorted dashboard, and the cast sort it replaced."""
    from runtool.models import RunFilter

    url = server.new_database()
    store = runtool_store(url)
    started = time.perf_counter()
    store.load(finished_dump(count, metrics=True))
    load_s = time.perf_counter() - started
    store._call(lambda c: c.execute("VACUUM ANALYZE"))  # as autovacuum would soon after such a load
    kind = dict(kind="detection", sort_metric="precision")
    last = (store.count(RunFilter(kind="detection")) - 1) // 20 * 20
    flip = iter(range(10_000))
    pages = iter(range(1, 10_000))
    cases = {
        "a header click (first page, each click reverses)":
            lambda: store.list(RunFilter(**kind, descending=next(flip) % 2 == 0), 20, 0),
        "next page each time": lambda: store.list(RunFilter(**kind), 20, 20 * next(pages)),
        "+ status failed": lambda: store.list(RunFilter(**kind, statuses=(Status.FAILED,)), 20, 0),
        "+ queue default": lambda: store.list(RunFilter(**kind, queue="default"), 20, 0),
        "the last page (runs without the metric)": lambda: store.list(RunFilter(**kind), 20, last),
        "before run_metrics: the cast sort, first page":
            lambda: store.fetch_all(_CAST_SORT, ("detection", "precision", "precision")),
    }
    times = common.time_cases({name: (lambda: None, step) for name, step in cases.items()}, repeat,
                              time.perf_counter)
    plan = store.fetch_all("EXPLAIN " + _plan_query(), ("detection", "precision"))
    store.close()
    return {"runs": count, "kind_runs": count // 3, "load_s": load_s, "repeat": repeat,
            "cases": {name: common.median_max(t) for name, t in times.items()},
            "plan": [next(iter(r.values())) for r in plan]}


def _plan_query() -> str:
    """The first part of the sorted list without other filters, as the store asks it (for EXPLAIN)."""
    return ("SELECT m.run_id FROM run_metrics m WHERE m.kind = %s AND m.name = %s"
            " ORDER BY m.value DESC, m.run_id DESC LIMIT 20")


def sort_only(count: int, repeat: int) -> int:
    """`--sort N`: only the sorted lists at N runs (results: pg_sort.json)."""
    server = pg.start(where=str(common.SCRATCH))
    try:
        out = sorted_lists(server, count, repeat)
    finally:
        server.stop()
    for name, v in out["cases"].items():
        common.say(f"  {name:<50} median {v['median_ms']:8.2f} ms  max {v['max_ms']:8.2f} ms")
    common.say("  plan: " + " | ".join(line.strip() for line in out["plan"]))
    common.say(f"saved {common.save('pg_sort', out)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--finished", type=int, default=50_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--pickups", type=int, default=15)
    parser.add_argument("--sort", type=int, metavar="N",
                        help="only time lists sorted by a metric at N runs (one kind: N // 3)")
    args = parser.parse_args()
    if args.sort:
        return sort_only(args.sort, 10)
    if args.quick:
        args.rounds, args.n, args.finished, args.samples, args.pickups = 2, 200, 5000, 50, 5
    server = pg.start(fsync=True, where=str(common.SCRATCH))
    from importlib.metadata import version

    out: dict[str, Any] = {"server": "PostgreSQL (Debian), fsync on, synchronous_commit on", "n": args.n,
                           "procrastinate": version("procrastinate")}
    try:
        common.say(f"claim+complete/s, {args.rounds} rounds of {args.n}")
        rates = common.interleaved(args.rounds, {
            "runtool": lambda: runtool_cycle(server, args.n),
            "procrastinate": lambda: procrastinate_cycle(server, args.n),
        }, common.say)
        out["cycle_per_s"] = {k: common.summary(v) for k, v in rates.items()}

        common.say(f"claim latency with {args.finished} finished")
        url = server.new_database()
        store = runtool_store(url)
        started = time.perf_counter()
        store.load(finished_dump(args.finished))
        common.say(f"  loaded {args.finished} finished runs in {time.perf_counter() - started:.1f} s")
        store._call(lambda c: c.execute("VACUUM ANALYZE runs"))  # as autovacuum would soon after such a load
        store.close()
        peer = server.new_database()
        latency = {"runtool": runtool_claim_latency(url, args.samples),
                   "procrastinate": asyncio.run(_procrastinate_claim_latency(peer, args.finished, args.samples))}
        # the same without waiting for the disk: what the statement itself costs
        latency["runtool, synchronous_commit off"] = runtool_claim_latency(url + NO_SYNC, args.samples)
        latency["procrastinate, synchronous_commit off"] = asyncio.run(
            _procrastinate_claim_latency(server.new_database() + NO_SYNC, args.finished, args.samples))
        out["claim_latency_s"] = {k: common.summary(v) for k, v in latency.items()}
        out["finished"] = args.finished
        for name, values in latency.items():
            common.say(f"  {name}: median {common.median(values) * 1000:.3f} ms")

        common.say(f"dashboard refresh with {args.finished} runs")
        out["dashboard"] = dashboard_refresh(url, 10)
        common.say(f"  {out['dashboard']}")

        common.say(f"pick-up latency, {args.pickups} submissions to an idle worker")
        delays = pickup_latency(server, args.pickups)
        out["pickup_s"] = common.summary(delays)
        common.say(f"  {common.median_max_line(delays)}")
    finally:
        server.stop()
    for name, summary in out["cycle_per_s"].items():
        common.say(f"{name}: {summary['median']:.0f} claim+complete/s (median of {summary['n']})")
    path = common.save("pg" if not args.quick else "pg-quick", out)
    common.say(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
