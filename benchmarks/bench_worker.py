"""Items 2 and 5: an idle `runtool worker`'s pick-up latency, CPU and memory.

- Pick-up latency: the worker idles; a run is submitted at a random moment (0.2-1.2 s after
  the previous run finished, so submissions fall at every phase of its 0.1 s wake check);
  latency = started_at - created_at from the run's record. Median and 95th percentile.
- Idle CPU: user+system CPU seconds of the worker process over a window of idle wall time.
- Memory: resident (RSS) and unique (USS: pages no other process shares, which is what a
  forked runner really adds) memory of the idle worker, and of the worker, the runner and
  the kernel while a run executes, sampled every 50 ms; compared with a `papermill` command
  executing the same notebook.
"""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

import common
from common import say

MB = 1024 * 1024


def _memory(proc: psutil.Process) -> dict[str, float]:
    info = proc.memory_full_info()
    return {"rss": info.rss / MB, "uss": info.uss / MB, "pss": getattr(info, "pss", 0) / MB}


def _peak(samples: list[dict[str, float]]) -> dict[str, float]:
    return {k: max(s[k] for s in samples) for k in samples[0]} if samples else {}


def _wait_for(predicate: Any, timeout: float, what: str, step: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def _start_worker(home: Path, log: Path) -> subprocess.Popen[Any]:
    err = open(log, "wb")
    proc = common.spawn([common.RUNTOOL, "--home", str(home), "worker"], stderr=err,
                        stdout=subprocess.DEVNULL)
    _wait_for(lambda: b"serving" in log.read_bytes(), 60, "the worker to start")
    return proc


def _latencies(q: Any, nb: Path, count: int, rng: random.Random) -> list[float]:
    from runtool.models import FINISHED

    latencies = []
    for i in range(count):
        time.sleep(rng.uniform(0.2, 1.2))  # idle, at a random phase of the wake-up checks
        run = q.submit(nb, {"n": i}, retries=0)
        done = _wait_for(lambda rid=run.id: (r := q.get(rid)).status in FINISHED and r, 120, f"run {run.id}")
        if done.status.value != "succeeded" or done.started_at is None:
            raise RuntimeError(f"run {run.id} ended {done.status.value}: {done.error}")
        latencies.append(done.started_at - done.created_at)
    return latencies


def _idle_cpu(proc: psutil.Process, seconds: float) -> dict[str, float]:
    time.sleep(1.0)  # let the last run's bookkeeping settle
    c0, t0 = proc.cpu_times(), time.monotonic()
    time.sleep(seconds)
    c1, t1 = proc.cpu_times(), time.monotonic()
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    return {"window_s": t1 - t0, "cpu_s": cpu, "percent_of_core": 100.0 * cpu / (t1 - t0)}


def _run_memory(q: Any, worker: psutil.Process, sleepy: Path, seconds: float) -> dict[str, Any]:
    """Peak memory of worker, runner and kernel while a run sleeps `seconds` in its cell."""
    run = q.submit(sleepy, {"seconds": seconds}, retries=0)
    rec = _wait_for(lambda: (r := q.get(run.id)).kernel_pid and r, 60, "the kernel to start", 0.01)
    runner, kernel = psutil.Process(rec.runner_pid), psutil.Process(rec.kernel_pid)
    samples: dict[str, list[dict[str, float]]] = {"worker": [], "runner": [], "kernel": []}
    while q.get(run.id).status.value == "processing":
        try:
            for name, proc in (("worker", worker), ("runner", runner), ("kernel", kernel)):
                samples[name].append(_memory(proc))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    _wait_for(lambda: q.get(run.id).finished_at, 60, "the run to finish")
    return {name: _peak(s) for name, s in samples.items()}


def _papermill_memory(sleepy: Path, folder: Path, seconds: float) -> dict[str, Any]:
    proc = common.spawn([common.PAPERMILL, str(sleepy), str(folder / "pm-out.ipynb"),
                         "-p", "seconds", str(seconds)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pm = psutil.Process(proc.pid)
    samples: dict[str, list[dict[str, float]]] = {"papermill": [], "kernel": []}
    while proc.poll() is None:
        try:
            kids = pm.children()
            samples["papermill"].append(_memory(pm))
            if kids:
                samples["kernel"].append(_memory(kids[0]))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    common.stop(proc)
    return {name: _peak(s) for name, s in samples.items()}


def run(quick: bool) -> dict[str, Any]:
    from runtool import RunQueue

    count, idle_s, run_s = (5, 10.0, 2.0) if quick else (20, 60.0, 3.0)
    rng = random.Random(6)
    say(f"worker: pick-up latency over {count} submissions, idle CPU over {idle_s:.0f} s, memory")
    with common.scratch("worker") as folder:
        nb = common.trivial_notebook(folder)
        sleepy = common.sleep_notebook(folder)
        home = folder / "home"
        q = RunQueue(home, user="bench")
        log = folder / "worker.log"
        proc = _start_worker(home, log)
        worker = psutil.Process(proc.pid)
        try:
            time.sleep(1.0)
            idle_before = _memory(worker)
            lat = _latencies(q, nb, count, rng)
            say(f"  pick-up latency: median {common.median(lat) * 1000:.0f} ms, "
                f"p95 {common.percentile(lat, 95) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms")
            cpu = _idle_cpu(worker, idle_s)
            say(f"  idle CPU: {cpu['cpu_s']:.3f} s over {cpu['window_s']:.1f} s = "
                f"{cpu['percent_of_core']:.3f}% of one core")
            idle_after = _memory(worker)
            during = _run_memory(q, worker, sleepy, run_s)
            say(f"  memory: idle worker RSS {idle_after['rss']:.0f} MB; during a run worker "
                f"{during['worker']['rss']:.0f} MB, runner {during['runner']['rss']:.0f} MB RSS / "
                f"{during['runner']['uss']:.0f} MB USS, kernel {during['kernel']['rss']:.0f} MB")
        finally:
            common.stop(proc)
            q.close()
        pm = _papermill_memory(sleepy, folder, run_s)
        say(f"  papermill command: {pm['papermill']['rss']:.0f} MB RSS, kernel {pm['kernel']['rss']:.0f} MB")
    return {
        "count": count, "latency": common.summary(lat), "idle_cpu": cpu,
        "memory": {"idle_worker_first": idle_before, "idle_worker": idle_after,
                   "during_run": during, "papermill_command": pm},
        "targets": {"median pick-up under 0.5 s": common.median(lat) < 0.5,
                    "idle CPU under 1% of a core": cpu["percent_of_core"] < 1.0},
    }


if __name__ == "__main__":
    args = common.main_args(__doc__ or "")
    try:
        common.save("worker", run(args.quick))
    finally:
        common.stop_all()
