"""Warm start (issue 13): runtool with a kernel started ahead, without it, and a warm papermill loop.

- Throughput: N trivial notebooks per round, three contenders interleaved: `runtool drain`
  (prestart = true, the default), `runtool drain` with `prestart = false` (the path before warm
  start), and `papermill.execute_notebook` in a loop in this process. Per run = wall / N.
- Stalls: every run of the drains (rounds x N, 100+): the time between one run's finish and
  the next's (everything a run costs in a drain), slowest against median; the warm loop's own
  slowest against median in the same rounds shows the machine's load spikes, and so do the load
  averages before and after.
- Idle worker: submit -> succeeded (`finished_at - created_at`) for the trivial notebook, one
  worker per setting, submissions alternating between them at random moments.
- Idle cost: CPU of the worker and of everything it started (the runner started ahead and its
  kernel) over a window; memory of each.
- Memory in a backlog: while a run executes and more wait, the worker keeps two runners with
  kernels started ahead; memory of every process then.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import psutil

import bench_throughput
import bench_worker
import common
from common import say

MB = 1024 * 1024
SETTINGS = {"prestart": "", "prestart = false": "prestart = false\n"}


def _drain(nb: Path, count: int, folder: Path, tag: str, config: str) -> dict[str, Any]:
    home = folder / f"home-{tag}"
    home.mkdir(parents=True)
    (home / "runtool.toml").write_text(config)
    result = bench_throughput._drain(nb, count, folder, tag)
    from runtool import RunQueue

    q = RunQueue(home, user="bench")
    finishes = sorted(r.finished_at for r in q.list(limit=count + 10) if r.finished_at)
    q.close()
    result["intervals"] = [b - a for a, b in zip(finishes, finishes[1:])]
    return result


def throughput(count: int, rounds: int) -> dict[str, Any]:
    import logging

    import papermill  # noqa: F401  - warm: imported before anything is timed

    logging.getLogger("papermill").setLevel(logging.WARNING)
    say(f"warm start throughput: {count} trivial notebooks x {rounds} rounds")
    load_before = os.getloadavg()
    with common.scratch("warm") as folder:
        nb = common.trivial_notebook(folder)
        counter = iter(range(10_000))
        bench_throughput._warm_loop(nb, 1, folder, "warmup")
        _drain(nb, 2, folder, "warmup", "")

        def drain(config: str) -> Any:
            return lambda: _drain(nb, count, folder, str(next(counter)), config)

        contenders = {
            "runtool drain (prestart, default)": drain(""),
            "runtool drain (prestart = false)": drain("prestart = false\n"),
            "warm papermill loop": lambda: bench_throughput._warm_loop(nb, count, folder, str(next(counter))),
        }
        results = common.interleaved(rounds, contenders, log=say)
    per_run = {name: common.median([r["per_run"] for r in rs]) for name, rs in results.items()}
    warm = per_run["warm papermill loop"]
    stalls = {}
    for name, rs in results.items():
        each = [d for r in rs for d in r.get("intervals", r["durations"])]
        stalls[name] = {"n": len(each), "median": common.median(each), "max": max(each),
                        "max/median": max(each) / common.median(each), "over 2 s": sum(d > 2.0 for d in each)}
    for name, value in per_run.items():
        say(f"  {name}: {value:.3f} s per run ({value / warm:.2f}x the warm loop); slowest run "
            f"{stalls[name]['max']:.2f} s = {stalls[name]['max/median']:.2f}x the median")
    return {"count": count, "rounds": rounds, "per_run_median": per_run,
            "load_average": {"before": load_before, "after": os.getloadavg()},
            "ratio_vs_warm": {name: v / warm for name, v in per_run.items()}, "stalls": stalls,
            "run_duration_median": {name: common.median([common.median(r["durations"]) for r in rs])
                                    for name, rs in results.items()},
            "gap_median": {name: common.median([r["gap"] for r in rs]) for name, rs in results.items()
                           if "gap" in rs[0]},
            "startup_median": {name: common.median([r["startup"] for r in rs]) for name, rs in results.items()
                               if "startup" in rs[0]},
            "results": {name: [{k: v for k, v in r.items() if k != "durations" or "intervals" not in r} for r in rs]
                        for name, rs in results.items()}}


def _kernel_or_not(worker: psutil.Process) -> list[tuple[psutil.Process, bool]]:
    """The worker's descendants, each with whether it is a kernel (the others are runners)."""
    found = []
    for proc in worker.children(recursive=True):
        try:
            found.append((proc, any("ipykernel" in part for part in proc.cmdline())))
        except psutil.Error:
            continue
    return found


def _tree(worker: psutil.Process) -> dict[str, psutil.Process]:
    """The worker, the runner it started ahead and that runner's kernel (when idle)."""
    found = {"worker": worker}
    for proc, is_kernel in _kernel_or_not(worker):
        found["kernel waiting" if is_kernel else "runner waiting"] = proc
    return found


def _memory(procs: dict[str, psutil.Process]) -> dict[str, dict[str, float]]:
    out = {}
    for name, proc in procs.items():
        info = proc.memory_full_info()
        out[name] = {"rss": info.rss / MB, "uss": info.uss / MB}
    return out


def _cpu(procs: dict[str, psutil.Process]) -> float:
    total = 0.0
    for proc in procs.values():
        times = proc.cpu_times()
        total += times.user + times.system
    return total


def _backlog_memory(q: Any, worker: psutil.Process, folder: Path, nb: Path) -> dict[str, dict[str, float]]:
    """Memory of each process while a run executes and two more wait (prestart)."""
    from runtool.models import FINISHED

    sleepy = common.sleep_notebook(folder)
    running = q.submit(sleepy, {"seconds": 4.0}, retries=0)
    waiting = [q.submit(nb, {"n": i}, retries=0) for i in range(2)]
    bench_worker._wait_for(lambda: q.get(running.id).kernel_pid, 60, "the run's kernel", 0.02)
    time.sleep(2.0)  # the kernels started ahead answer meanwhile
    rec = q.get(running.id)
    procs = {"worker": worker}
    for proc, is_kernel in _kernel_or_not(worker):
        if proc.pid in (rec.runner_pid, rec.kernel_pid):
            name = "kernel running" if is_kernel else "runner running"
        else:
            count = sum(k.startswith("kernel waiting" if is_kernel else "runner waiting") for k in procs)
            name = f"{'kernel' if is_kernel else 'runner'} waiting {count + 1}"
        procs[name] = proc
    memory = _memory(procs)
    for run in (running, *waiting):
        bench_worker._wait_for(lambda rid=run.id: q.get(rid).status in FINISHED, 120, f"run {run.id}", 0.02)
    return memory


def idle(count: int, idle_s: float) -> dict[str, Any]:
    from runtool import RunQueue
    from runtool.models import FINISHED

    say(f"warm start, idle worker: submit -> succeeded over {count} submissions per setting, "
        f"idle CPU over {idle_s:.0f} s")
    rng = random.Random(13)
    with common.scratch("warm-idle") as folder:
        nb = common.trivial_notebook(folder)
        queues, workers = {}, {}
        for name, config in SETTINGS.items():
            home = folder / f"home-{len(queues)}"
            home.mkdir()
            (home / "runtool.toml").write_text(config)
            queues[name] = RunQueue(home, user="bench")
            workers[name] = psutil.Process(bench_worker._start_worker(home, folder / f"worker-{len(queues)}.log").pid)
        done: dict[str, list[tuple[float, float]]] = {name: [] for name in SETTINGS}
        for i in range(count + 1):  # the first of each is untimed: nothing to guess a kernel from
            for name in (list(SETTINGS) if i % 2 else list(reversed(SETTINGS))):
                q = queues[name]
                time.sleep(rng.uniform(0.3, 1.0))
                run = q.submit(nb, {"n": i}, retries=0)
                rec = bench_worker._wait_for(lambda q=q, rid=run.id: (r := q.get(rid)).status in FINISHED and r,
                                             120, f"run {run.id}", 0.005)
                if rec.status.value != "succeeded":
                    raise RuntimeError(f"run {run.id} ended {rec.status.value}: {rec.error}")
                if i:
                    done[name].append((rec.finished_at - rec.created_at, rec.started_at - rec.created_at))
        latency = {name: {"submit_to_succeeded": common.summary([a for a, _ in v]),
                          "pick_up": common.summary([b for _, b in v])} for name, v in done.items()}
        for name, v in latency.items():
            say(f"  {name}: submit -> succeeded median {v['submit_to_succeeded']['median'] * 1000:.0f} ms, "
                f"p95 {v['submit_to_succeeded']['p95'] * 1000:.0f} ms")
        time.sleep(1.0)
        trees = {name: _tree(w) for name, w in workers.items()}
        memory = {name: _memory(t) for name, t in trees.items()}
        before = {name: (_cpu(t), time.monotonic()) for name, t in trees.items()}
        time.sleep(idle_s)
        cpu = {}
        for name, t in trees.items():
            used, t1 = _cpu(t) - before[name][0], time.monotonic()
            cpu[name] = {"cpu_s": used, "window_s": t1 - before[name][1],
                         "percent_of_core": 100.0 * used / (t1 - before[name][1]),
                         "processes": sorted(t)}
            say(f"  {name}: idle CPU {cpu[name]['percent_of_core']:.2f}% of a core ({', '.join(sorted(t))}); "
                + "; ".join(f"{k} {m['rss']:.0f} MB RSS / {m['uss']:.0f} MB USS" for k, m in memory[name].items()))
        backlog = _backlog_memory(queues["prestart"], workers["prestart"], folder, nb)
        say("  prestart, a run executing and two waiting: " + "; ".join(
            f"{k} {m['rss']:.0f} MB RSS / {m['uss']:.0f} MB USS" for k, m in backlog.items()))
        for q in queues.values():
            q.close()
        for w in workers.values():
            w.terminate()
            w.wait(30)
    return {"count": count, "latency": latency, "idle_cpu": cpu, "memory": memory, "backlog_memory": backlog}


def run(quick: bool) -> dict[str, Any]:
    count, rounds, submissions, idle_s = (6, 3, 5, 10.0) if quick else (25, 5, 20, 30.0)
    data = {"throughput": throughput(count, rounds), "idle": idle(submissions, idle_s)}
    t, i = data["throughput"], data["idle"]
    on = "runtool drain (prestart, default)"
    data["targets"] = {
        "drain at most 0.6x the warm loop": t["ratio_vs_warm"][on] <= 0.6,
        "idle submit -> succeeded median under 0.3 s": i["latency"]["prestart"]["submit_to_succeeded"]["median"] < 0.3,
        "slowest run under 2x the median": t["stalls"][on]["max/median"] < 2.0,
        "idle CPU under 1% of a core": i["idle_cpu"]["prestart"]["percent_of_core"] < 1.0,
    }
    return data


if __name__ == "__main__":
    args = common.main_args(__doc__ or "")
    try:
        common.save("warm", run(args.quick))
    finally:
        common.stop_all()
