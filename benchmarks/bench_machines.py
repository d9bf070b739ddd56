"""Several machines on one PostgreSQL queue (issue 12): pick-up across machines, contended claims.

    python benchmarks/bench_machines.py [--quick] [--rounds 3] [--n 1000] [--pickups 15]

One throwaway server (Debian's PostgreSQL via tests/pg.py) on the local disk, fsync on,
reached over TCP on loopback; machines are processes with their own RUNTOOL_MACHINE.
- pick-up across machines: runs submitted on machine A (this process), an idle `runtool
  worker` on machine B (poll 1 h: only LISTEN/NOTIFY wakes it in time), and again with four
  idle machines B-E competing for each run; submit -> start from the record (both stamped
  by the server's clock).
- claims/s with 4 machines contending: N runs queued, then 4 processes, one machine each,
  claim and record success one by one (Store.claim + lifecycle.change, each its own
  committed transaction) until none is left; against one machine doing the same alone.
  Interleaved rounds, a fresh database per round.
Results: benchmarks/results/machines.json; the figures are copied into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
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
from runtool.models import Change, Claimant, Status  # noqa: E402
from runtool.pg_store import PostgresStore  # noqa: E402

RUNS_DIR = Path(tempfile.gettempdir()) / "rt-bench-machines-runs"


def _claimer(url: str, machine: str, go: Any, done: Any) -> None:
    store = PostgresStore(url, RUNS_DIR)
    me = Claimant(f"{machine}:{os.getpid()}", os.getpid(), 0.0, machine)
    count = 0
    go.wait()
    while (run := store.claim([], me)) is not None:
        lifecycle.change(store, run.id, [Status.PROCESSING], Change(Status.SUCCEEDED, me.name, "done"),
                         "record success", attempt=run.attempt)
        count += 1
    done.put(count)
    store.close()


def contended(server: pg.Server, n: int, machines: int) -> float:
    """claim+complete per second, all machines together, for n queued runs."""
    url = server.new_database()
    store = PostgresStore(url, RUNS_DIR)
    for i in range(n):
        lifecycle.submit(store, common.new_run(i), "bench")
    store.close()
    ctx = multiprocessing.get_context("spawn")
    go, done = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(url, f"bench-m{i}", go, done)) for i in range(machines)]
    for p in procs:
        p.start()
    time.sleep(2.0)  # every claimer connected and waiting
    started = time.perf_counter()
    go.set()
    counts = [done.get(timeout=600) for _ in procs]
    elapsed = time.perf_counter() - started
    for p in procs:
        p.join()
    assert sum(counts) == n, counts
    return n / elapsed


def pickup(server: pg.Server, count: int, idle_machines: int) -> list[float]:
    from runtool import RunQueue

    with tempfile.TemporaryDirectory(prefix="rt-bench-machines-") as tmp:
        home, url = Path(tmp) / "home", server.new_database()
        base = dict(os.environ, RUNTOOL_DATABASE_URL=url, RUNTOOL_LOCK_DIR=str(Path(tmp) / "locks"))
        notebook = common.trivial_notebook(Path(tmp))
        os.environ.update(RUNTOOL_DATABASE_URL=url, RUNTOOL_MACHINE="bench-a")
        try:
            q = RunQueue(home, user="bench")
            workers = [common.spawn([sys.executable, "-m", "runtool", "--home", str(home), "worker", "--poll", "1h"],
                                    env=dict(base, RUNTOOL_MACHINE=f"bench-{chr(ord('b') + i)}"))
                       for i in range(idle_machines)]
            try:
                for _ in range(idle_machines):  # each worker's first run pays for its imports
                    common.wait_finished(q, q.submit(notebook).id)
                time.sleep(3.0)
                delays = []
                for _ in range(count):
                    run = q.submit(notebook)
                    done = common.wait_finished(q, run.id)
                    assert done.machine != "bench-a"
                    delays.append(done.started_at - done.created_at)
            finally:
                for w in workers:
                    common.stop(w)
            q.close()
        finally:
            del os.environ["RUNTOOL_DATABASE_URL"], os.environ["RUNTOOL_MACHINE"]
    return delays


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--pickups", type=int, default=15)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.n, args.pickups = 1, 200, 5
    server = pg.start(fsync=True, where=str(common.SCRATCH))
    out: dict[str, Any] = {"server": "PostgreSQL (Debian), fsync on, synchronous_commit on, TCP on loopback",
                           "n": args.n, "cpus": os.cpu_count()}
    try:
        common.say(f"claim+complete/s, {args.rounds} rounds of {args.n}: 1 machine vs 4 contending")
        rates = common.interleaved(args.rounds, {
            "1 machine": lambda: contended(server, args.n, 1),
            "4 machines": lambda: contended(server, args.n, 4),
        }, common.say)
        out["cycle_per_s"] = {k: common.summary(v) for k, v in rates.items()}
        for machines in (1, 4):
            common.say(f"pick-up latency, {args.pickups} submissions on machine A, {machines} idle machine(s)")
            delays = pickup(server, args.pickups, machines)
            out[f"pickup_s_{machines}_idle"] = common.summary(delays)
            common.say(f"  {common.median_max_line(delays)}")
    finally:
        server.stop()
    for name, summary in out["cycle_per_s"].items():
        common.say(f"{name}: {summary['median']:.0f} claim+complete/s (median of {summary['n']})")
    path = common.save("machines" if not args.quick else "machines-quick", out)
    common.say(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
