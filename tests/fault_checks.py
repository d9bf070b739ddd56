"""The fault campaign's trials and invariant checks, shared by tests/test_faults_*.py (small
sizes, in the normal suite) and scripts/fault_soak.py (the long soaks, sizes from options).

Everything runs for real: `runtool` processes, papermill, kernels, a SQLite file per home.
A trial notebook notes each execution's start and end (with the kernel's pid) in a marker
file and starts a `sleep 300` grandchild, so the checks can tell executions apart, see two
at a time, and find processes that outlived their run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import psutil
from helpers import PYTHON, notebook, runtool, spawn, wait_for, write_config

from runtool import RunQueue, Status
from runtool.lock import ExecutorLock
from runtool.models import TRANSITIONS
from runtool.processes import TOKEN_VAR

TRIAL_PARAMETERS = """\
run_id = 0
run_dir = ""
sleep = 0.0
fail = False
marker = ""
grandchild = True
"""
TRIAL_BODY = [
    (
        "import json, os, subprocess, time\n"
        "def note(event):\n"
        "    if marker:\n"
        "        with open(marker, 'a') as f:\n"
        "            f.write(json.dumps({'run_id': run_id, 'event': event, 'at': time.time(),\n"
        "                                'pid': os.getpid()}) + '\\n')\n"
        "note('start')\n"
        "if grandchild:\n"
        "    child = subprocess.Popen(['sleep', '300'])\n"
        "    with open(os.path.join(run_dir, 'grandchild.pid'), 'a') as f:\n"
        "        f.write(f'{child.pid}\\n')"
    ),
    "time.sleep(sleep)",
    "try:\n    if fail:\n        raise ValueError('asked to fail')\nfinally:\n    note('end')",
]
#: Retries happen at once in trials, so that one drain after the fault finishes every run.
TRIAL_CONFIG = 'retry_base_delay = "0s"\n'


def trial_notebook(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return notebook(folder / "trial.ipynb", parameters=TRIAL_PARAMETERS, body=TRIAL_BODY)


# -- invariants ---------------------------------------------------------------------------


def executions(marker: Path, killed_at: float | None = None) -> list[dict[str, Any]]:
    """One entry per execution (kernel) seen in the marker file: run id, start, end.

    An execution without an end was cut short; it ended when the worker was killed.
    """
    found: dict[tuple[int, int], dict[str, Any]] = {}
    if marker.exists():
        for line in marker.read_text().splitlines():
            if not line.strip():
                continue
            note = json.loads(line)
            entry = found.setdefault((note["run_id"], note["pid"]),
                                     {"run_id": note["run_id"], "start": None, "end": None})
            entry[note["event"]] = note["at"]
    for entry in found.values():
        if entry["end"] is None:
            entry["cut"] = True
            entry["end"] = killed_at if killed_at is not None else entry["start"]
    return sorted(found.values(), key=lambda e: e["start"])


def overlaps(execs: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """Pairs of runs whose executions overlapped in time (should be none)."""
    return [(a["run_id"], b["run_id"]) for a, b in pairwise(execs) if b["start"] < a["end"]]


def history_problems(q: RunQueue, run_id: int) -> list[str]:
    """Ways in which a run's record and its history disagree, or break the status rules."""
    run = q.get(run_id, history=True)
    steps = [h["status"] for h in run.history]
    problems = []
    if not steps or steps[0] != "waiting":
        problems.append(f"run {run_id}: history does not start with waiting: {steps}")
    for before, after in pairwise(steps):
        if Status(after) not in TRANSITIONS[Status(before)]:
            problems.append(f"run {run_id}: illegal change {before} -> {after} in {steps}")
    if steps and steps[-1] != run.status.value:
        problems.append(f"run {run_id}: status {run.status.value} but history ends {steps[-1]}")
    # attempts are counted from the last retry (which resets them)
    last_retry = max((i for i, h in enumerate(run.history) if h["reason"] == "retried"), default=0)
    claims = steps[last_retry:].count("processing")
    requeued = sum(1 for h in run.history[last_retry:] if "attempt not counted" in h["reason"])
    if run.attempt != claims - requeued:
        problems.append(f"run {run_id}: attempt {run.attempt} but {claims} claim(s) in history")
    if run.status is Status.FAILED:
        if not run.error:
            problems.append(f"run {run_id}: failed without an error")
        if not (Path(run.run_dir) / "error.txt").is_file():
            problems.append(f"run {run_id}: failed without error.txt")
    return problems


def leftover_processes(home: Path) -> list[str]:
    """Live processes of any run of `home`: runners, kernels, grandchildren (by token and pid)."""
    runs = str(home / "runs") + os.sep
    left = {}
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(TOKEN_VAR, "").startswith(runs):
                left[proc.pid] = " ".join(proc.info["cmdline"] or [])
        except psutil.Error:
            continue
    for pid_file in (home / "runs").glob("*/grandchild.pid"):
        for text in pid_file.read_text().split():
            try:
                proc = psutil.Process(int(text))
                if proc.status() != psutil.STATUS_ZOMBIE and proc.cmdline() == ["sleep", "300"]:
                    left[proc.pid] = "sleep 300 (grandchild)"
            except (psutil.Error, ValueError):
                continue
    return [f"{pid}: {cmd}" for pid, cmd in sorted(left.items())]


def integrity(home: Path) -> str:
    conn = sqlite3.connect(home / "runtool.db")
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def state(home: Path) -> tuple:
    """Everything a refused request must leave alone: every table's rows, and runs/
    (of the PostgreSQL database of $RUNTOOL_DATABASE_URL when set, else runtool.db)."""
    url = os.environ.get("RUNTOOL_DATABASE_URL")
    if url:
        import psycopg

        with psycopg.connect(url) as pconn:
            tables = tuple(tuple(pconn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall())
                           for t in ("runs", "history", "paused"))
    else:
        conn = sqlite3.connect(home / "runtool.db")
        try:
            tables = tuple(tuple(conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall())
                           for t in ("runs", "history", "paused"))
        finally:
            conn.close()
    return tables, tuple(sorted(p.name for p in (home / "runs").iterdir()))


def lock_free(home: Path) -> bool:
    return ExecutorLock(home / "executor.lock").is_free()


def reap(procs: list[subprocess.Popen]) -> None:
    """Kill and wait for processes a trial started (whatever state they are in)."""
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
    for proc in procs:
        try:
            proc.communicate(timeout=30)
        except (subprocess.TimeoutExpired, ValueError):
            pass


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {"n": len(values), "median": statistics.median(values), "p95": percentile(values, 95),
            "p99": percentile(values, 99), "max": max(values)}


# -- kill -9 trials -----------------------------------------------------------------------

#: How a trial kills the worker: at a crash point it honours, or from outside.
CRASH_POINTS = ("claimed", "executed", "recorded")
#: random: at a random delay after the worker starts (often while it starts or is idle);
#: random-run: at a random delay after it claimed its first run (in a cell, after the
#: last cell, while papermill shuts the kernel down or the outcome is recorded).
MODES = ("random", "random-run", "claiming", *CRASH_POINTS)


@dataclass
class KillTrial:
    mode: str
    delay: float | None = None
    killed: bool = False
    killed_in: str = ""
    statuses: dict[int, str] = field(default_factory=dict)
    executions: int = 0
    repaired: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


def kill_trial(root: Path, mode: str, rng: random.Random, runs: int = 3) -> KillTrial:
    """Submit `runs` runs, kill -9 the worker the way `mode` says, then reconcile and drain.

    Afterwards every run must be finished as its parameters decide (fail=True: failed, with
    the notebook's error or WorkerDied if the kill hit it; else succeeded), its history legal
    and matching its record, no two executions overlapping, no process of a run alive, the
    executor lock free and the database intact.
    """
    began = time.monotonic()
    home, marker = root / "home", root / "marks.jsonl"
    write_config(home, TRIAL_CONFIG)
    nb = trial_notebook(root)
    q = RunQueue(home)
    trial = KillTrial(mode)
    plan = {}
    for _ in range(runs):
        fail = rng.random() < 0.25
        run = q.submit(nb, {"sleep": round(rng.uniform(0.0, 1.5), 2), "fail": fail, "marker": str(marker)},
                       retries=0 if fail else 3)
        plan[run.id] = fail
    procs: list[subprocess.Popen] = []
    holder: sqlite3.Connection | None = None
    killed_at = None
    try:
        env = {"RUNTOOL_TEST_CRASH_AT": mode} if mode in CRASH_POINTS else {}
        if mode == "claiming":
            # hold the database so that the worker, having taken the executor lock, waits
            # inside its claim: then kill it there
            holder = sqlite3.connect(home / "runtool.db", isolation_level=None, timeout=60)
            holder.execute("BEGIN IMMEDIATE")
        worker = spawn(home, "worker", "--poll", "0.2s", env=env)
        procs.append(worker)
        if mode in ("random", "random-run"):
            if mode == "random":
                trial.delay = round(rng.uniform(0.5, 2.5 + 1.5 * runs), 2)
            else:
                trial.delay = round(rng.uniform(0.0, 2.5), 2)
                wait_for(lambda: q.list(status="processing", limit=1), timeout=120, every=0.01)
            try:
                worker.wait(timeout=trial.delay)
            except subprocess.TimeoutExpired:
                trial.killed_in = _phase(q, home)
                killed_at = time.time()
                worker.send_signal(signal.SIGKILL)
                trial.killed = True
        elif mode == "claiming":
            wait_for(lambda: not lock_free(home), timeout=120)
            time.sleep(0.2)  # inside BEGIN IMMEDIATE, busy-waiting for the holder
            trial.killed_in = "claim (waiting for the database)"
            killed_at = time.time()
            worker.send_signal(signal.SIGKILL)
            trial.killed = True
            holder.execute("ROLLBACK")
        else:
            try:
                worker.wait(timeout=120)
            except subprocess.TimeoutExpired:
                trial.problems.append(f"crash point {mode} not reached in 120 s")
            trial.killed = worker.returncode == -signal.SIGKILL
            trial.killed_in = f"crash point {mode}" if trial.killed else "not reached"
            killed_at = time.time()
        if worker.poll() is None:  # not killed: let it finish its run and stop
            worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=120)
        repaired = runtool(home, "reconcile", timeout=120)
        trial.repaired = len(repaired.out.splitlines())
        if repaired.code != 0:
            trial.problems.append(f"reconcile exited {repaired.code}: {repaired.err.strip()}")
        drained = runtool(home, "drain", timeout=600)
        if drained.code != 0:
            trial.problems.append(f"drain exited {drained.code}: {drained.err.strip()[-300:]}")
        trial.problems += check_after_faults(q, home, marker, plan, killed_at)
        trial.statuses = {run_id: q.get(run_id).status.value for run_id in plan}
        trial.executions = len(executions(marker, killed_at))
    finally:
        if holder is not None:
            holder.close()
        reap(procs)
        q.close()
        trial.seconds = round(time.monotonic() - began, 2)
    return trial


def _phase(q: RunQueue, home: Path) -> str:
    """Roughly where the worker is, just before it is killed (for the report)."""
    busy = q.list(status="processing", limit=1)
    if not busy:
        return "idle or starting" if lock_free(home) else "claiming or recording"
    run = busy[0]
    if run.progress_total and run.progress_done is not None:
        if run.progress_done >= run.progress_total:
            return f"run {run.id} after its last cell"
        return f"run {run.id} cell {run.progress_done + 1} of {run.progress_total}"
    return f"run {run.id} starting"


def check_after_faults(q: RunQueue, home: Path, marker: Path, plan: dict[int, bool],
                       killed_at: float | None) -> list[str]:
    problems = []
    for run_id, fail in plan.items():
        run = q.get(run_id)
        problems += history_problems(q, run_id)
        if fail:
            if run.status is not Status.FAILED or (run.error or {}).get("type") not in ("ValueError", "WorkerDied"):
                problems.append(f"run {run_id} (fail=True): {run.status.value}, error {run.error}")
        elif run.status is not Status.SUCCEEDED:
            problems.append(f"run {run_id}: {run.status.value}, expected succeeded (error {run.error})")
    execs = executions(marker, killed_at)
    problems += [f"runs {a} and {b} executed at the same time" for a, b in overlaps(execs)]
    for run_id in plan:
        started = sum(1 for e in execs if e["run_id"] == run_id)
        claims = [h["status"] for h in q.get(run_id, history=True).history].count("processing")
        if started > claims:
            problems.append(f"run {run_id}: {started} executions but {claims} claim(s)")
        ended = sum(1 for e in execs if e["run_id"] == run_id and not e.get("cut"))
        if q.get(run_id).status is Status.SUCCEEDED and ended < 1:
            problems.append(f"run {run_id}: succeeded but no execution finished")
    left = leftover_processes(home)
    if left:
        problems.append(f"processes left: {left}")
        for entry in left:  # do not let one trial's leftovers spoil the next
            try:
                os.kill(int(entry.split(":")[0]), signal.SIGKILL)
            except OSError:
                pass
    if not wait_for_lock_free(home):
        problems.append("executor lock still held")
    check = integrity(home)
    if check != "ok":
        problems.append(f"integrity_check: {check}")
    return problems


def wait_for_lock_free(home: Path, timeout: float = 5.0) -> bool:
    try:
        return bool(wait_for(lambda: lock_free(home), timeout=timeout))
    except AssertionError:
        return False


# -- cron storm ---------------------------------------------------------------------------


@dataclass
class CronStorm:
    seconds: float
    per_second: int
    runs: int
    drains: int = 0
    exit_codes: dict[int, int] = field(default_factory=dict)
    executed_by: dict[str, int] = field(default_factory=dict)
    extra_seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    working_seconds: list[float] = field(default_factory=list)
    left_after_storm: int = 0
    problems: list[str] = field(default_factory=list)
    wall: float = 0.0


def cron_storm(root: Path, seconds: float, per_second: int, runs: int) -> CronStorm:
    """Start `per_second` drains every second for `seconds` over `runs` short runs.

    Each run must execute exactly once, never two at a time, every drain must exit 0, and
    the drains that found another one executing must say so in one line.
    """
    began = time.monotonic()
    home, marker = root / "home", root / "marks.jsonl"
    nb = trial_notebook(root)
    q = RunQueue(home)
    ids = [q.submit(nb, {"sleep": 0.1, "marker": str(marker), "grandchild": False}).id for _ in range(runs)]
    storm = CronStorm(seconds, per_second, runs)
    started: list[tuple[subprocess.Popen, float]] = []
    try:
        tick = time.monotonic()
        while time.monotonic() - began < seconds:
            for _ in range(per_second):
                started.append((spawn(home, "drain"), time.monotonic()))
            tick += 1.0
            while time.monotonic() < tick:  # note each exit within 50 ms
                _collect(started, storm)
                time.sleep(0.05)
        deadline = time.monotonic() + 600
        while started and time.monotonic() < deadline:
            _collect(started, storm)
            time.sleep(0.05)
        storm.left_after_storm = sum(1 for i in ids if q.get(i).status is not Status.SUCCEEDED)
        if storm.left_after_storm:  # the storm was too short for every run: finish them
            final = runtool(home, "drain", timeout=600)
            storm.exit_codes[final.code] = storm.exit_codes.get(final.code, 0) + 1
    finally:
        reap([p for p, _ in started])
        storm.wall = round(time.monotonic() - began, 1)
    for run_id in ids:
        run = q.get(run_id, history=True)
        if run.status is not Status.SUCCEEDED or run.attempt != 1:
            storm.problems.append(f"run {run_id}: {run.status.value}, attempt {run.attempt}")
        storm.problems += history_problems(q, run_id)
    execs = executions(marker)
    counted = [e["run_id"] for e in execs]
    for run_id in ids:
        if counted.count(run_id) != 1:
            storm.problems.append(f"run {run_id} executed {counted.count(run_id)} time(s)")
    storm.problems += [f"runs {a} and {b} overlapped" for a, b in overlaps(execs)]
    if set(storm.exit_codes) - {0}:
        storm.problems.append(f"drain exit codes: {storm.exit_codes}")
    if leftover_processes(home):
        storm.problems.append(f"processes left: {leftover_processes(home)}")
    if integrity(home) != "ok":
        storm.problems.append("integrity_check failed")
    q.close()
    return storm


def _collect(started: list[tuple[subprocess.Popen, float]], storm: CronStorm) -> None:
    """Take in the drains that exited (how long each took, what it said)."""
    for proc, at in list(started):
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # also says what CPU it used
        if not pid:
            continue
        proc.returncode = os.waitstatus_to_exitcode(status)
        took = time.monotonic() - at
        out, err = proc.communicate(timeout=60)
        storm.cpu_seconds.append(usage.ru_utime + usage.ru_stime)
        started.remove((proc, at))
        storm.drains += 1
        storm.exit_codes[proc.returncode] = storm.exit_codes.get(proc.returncode, 0) + 1
        lines = out.splitlines()
        if len(lines) != 1 or not lines[0].startswith("runtool drain: "):
            storm.problems.append(f"drain said {out!r} (stderr {err[-200:]!r})")
            continue
        said = lines[0]
        if said.startswith("runtool drain: executed ") and not said.endswith(" 0 run(s)"):
            storm.executed_by[said] = storm.executed_by.get(said, 0) + 1
            storm.working_seconds.append(took)
        else:
            storm.extra_seconds.append(took)


# -- submit storm -------------------------------------------------------------------------

SUBMITTER = """
import json, sys, time
from runtool import RunQueue
home, nb, me, marker, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
q = RunQueue(home)
ids, took = [], []
for i in range(count):
    t = time.perf_counter()
    # a unique sleep (under 1 ms) per submission tells lost and duplicated runs apart
    run = q.submit(nb, {"marker": marker, "grandchild": False, "sleep": float(me * 100000 + i) / 1e9})
    took.append(time.perf_counter() - t)
    ids.append(run.id)
print(json.dumps({"ids": ids, "took": took}))
"""

REFRESHER = """
import json, sys, time
from runtool.widgets import Dashboard
dash = Dashboard(sys.argv[1], refresh_interval=None)
stop_file = sys.argv[2]
import os
refreshes, errors, took = 0, [], []
while not os.path.exists(stop_file):
    t = time.perf_counter()
    try:
        dash.refresh()
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
    took.append(time.perf_counter() - t)
    refreshes += 1
    if "cannot read" in dash.message or "refresh failed" in dash.message:
        errors.append(dash.message)
dash.close()
print(json.dumps({"refreshes": refreshes, "errors": errors[:20], "took": took}))
"""


@dataclass
class SubmitStorm:
    procs: int
    each: int
    submitted: int = 0
    stored: int = 0
    executed: int = 0
    submit_seconds: dict[str, float] = field(default_factory=dict)
    refreshes: int = 0
    refresh_seconds: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    wall: float = 0.0


def submit_storm(root: Path, procs: int, each: int) -> SubmitStorm:
    """`procs` processes submit `each` runs while a worker drains and the dashboard refreshes.

    None may be lost or duplicated, no submitter, worker or dashboard may report an error,
    and every run the worker finished must have succeeded exactly once.
    """
    began = time.monotonic()
    home, marker, stop = root / "home", root / "marks.jsonl", root / "stop"
    nb = trial_notebook(root)
    storm = SubmitStorm(procs, each)
    with RunQueue(home) as q:  # a first run: the storm starts once the worker is executing
        first = q.submit(nb, {"grandchild": False}).id
    worker = spawn(home, "worker", "--poll", "0.2s")
    refresher = subprocess.Popen([PYTHON, "-c", REFRESHER, str(home), str(stop)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    submitters: list[subprocess.Popen] = []
    try:
        with RunQueue(home) as q:
            wait_for(lambda: q.get(first).status is Status.SUCCEEDED, timeout=300)
        submitters = [subprocess.Popen([PYTHON, "-c", SUBMITTER, str(home), str(nb), str(s), str(marker),
                                        str(each)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                      for s in range(procs)]
        results = [s.communicate(timeout=600 + each) for s in submitters]
        stop.touch()
        dash_out, dash_err = refresher.communicate(timeout=120)
        worker.send_signal(signal.SIGTERM)
        _, worker_err = worker.communicate(timeout=300)
    finally:
        reap([worker, refresher, *submitters])
        storm.wall = round(time.monotonic() - began, 1)
    took: list[float] = []
    ids: list[int] = []
    for (out, err), proc in zip(results, submitters):
        if proc.returncode != 0 or err.strip():
            storm.problems.append(f"submitter exited {proc.returncode}: {err.strip()[-300:]}")
            continue
        data = json.loads(out)
        ids += data["ids"]
        took += data["took"]
    storm.submitted = len(ids)
    storm.submit_seconds = summary(took)
    if refresher.returncode != 0 or dash_err.strip():
        storm.problems.append(f"dashboard exited {refresher.returncode}: {dash_err.strip()[-300:]}")
    else:
        dash = json.loads(dash_out)
        storm.refreshes = dash["refreshes"]
        storm.refresh_seconds = summary(dash["took"])
        storm.problems += [f"dashboard: {e}" for e in dash["errors"]]
    if worker.returncode != 0:
        storm.problems.append(f"worker exited {worker.returncode}: {worker_err.strip()[-300:]}")
    if "locked" in worker_err or "Traceback" in worker_err:
        storm.problems.append(f"worker reported: {worker_err.strip()[-300:]}")
    if len(ids) != len(set(ids)):
        storm.problems.append("duplicate run ids handed out")
    q = RunQueue(home)
    stored = [r for r in q.list(limit=procs * each + 10) if r.id != first]
    storm.stored = len(stored)
    if sorted(r.id for r in stored) != sorted(ids):
        storm.problems.append(f"stored {len(stored)} runs, submitted {len(ids)}")
    wanted = sorted(float(s * 100000 + i) / 1e9 for s in range(procs) for i in range(each))
    if sorted(r.parameters["sleep"] for r in stored) != wanted:
        storm.problems.append("stored parameters differ from the submitted ones (lost or duplicated)")
    execs = executions(marker)
    storm.executed = len(execs)
    done = [e["run_id"] for e in execs]
    if len(done) != len(set(done)):
        storm.problems.append("a run executed twice")
    storm.problems += [f"runs {a} and {b} overlapped" for a, b in overlaps(execs)]
    succeeded = {r.id for r in stored if r.status is Status.SUCCEEDED}
    if succeeded != set(done):
        storm.problems.append(f"succeeded {len(succeeded)} but executed {len(set(done))}")
    if any(r.status not in (Status.SUCCEEDED, Status.WAITING) for r in stored):
        storm.problems.append("runs neither succeeded nor waiting")
    if q.store.integrity_check() != "ok":
        storm.problems.append("integrity_check failed")
    q.close()
    return storm


def run_python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, check=False)
