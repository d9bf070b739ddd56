"""Shared helpers of the benchmark suite: scratch folders, notebooks, statistics, results.

Every benchmark script writes one JSON file into `benchmarks/results/` (ignored by git);
`report.py` turns those files into `docs/benchmarks.md` and the plots in `docs/img/`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Where results go; run_all.py --quick points it at results/quick/ so that a smoke run
#: never mixes into the figures of a full run.
RESULTS = Path(os.environ.get("RUNTOOL_BENCH_RESULTS", ROOT / "benchmarks" / "results"))
PYTHON = sys.executable
BIN = Path(sys.executable).parent
RUNTOOL = str(BIN / "runtool")
PAPERMILL = str(BIN / "papermill")
#: Disk-backed scratch space: fsync must cost what it costs on a real disk.
SCRATCH = Path(os.environ.get("RUNTOOL_BENCH_TMP", "/tmp"))
#: RAM-backed space, only for building large fixtures quickly (copied to disk before timing).
FAST_SCRATCH = Path("/dev/shm") if Path("/dev/shm").is_dir() else SCRATCH

_children: list[subprocess.Popen[Any]] = []
_own_fixtures: Path | None = None


# -- scratch folders and processes ----------------------------------------------------


@contextlib.contextmanager
def scratch(prefix: str, where: Path = SCRATCH) -> Iterator[Path]:
    """A fresh folder, removed afterwards whatever happens."""
    path = Path(tempfile.mkdtemp(prefix=f"rtbench-{prefix}-", dir=where))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def spawn(args: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
    """Start a process that `stop_all` ends if the benchmark is interrupted."""
    proc = subprocess.Popen(list(args), **kw)
    _children.append(proc)
    return proc


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc in _children:
        _children.remove(proc)


def stop_all() -> None:
    for proc in list(_children):
        stop(proc, signal.SIGKILL, 5.0)


def run_cmd(args: Sequence[str], **kw: Any) -> float:
    """Run a command to completion; its wall time in seconds (raises if it fails)."""
    kw.setdefault("stdout", subprocess.DEVNULL)
    kw.setdefault("stderr", subprocess.DEVNULL)
    t0 = time.perf_counter()
    subprocess.run(list(args), check=True, **kw)
    return time.perf_counter() - t0


# -- notebooks ------------------------------------------------------------------------


def write_notebook(path: Path, parameters: str, *cells: str) -> Path:
    """A python3 notebook whose first code cell (tagged `parameters`) holds `parameters`."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(
        cells=[new_code_cell(parameters, metadata={"tags": ["parameters"]})]
        + [new_code_cell(c) for c in cells],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    nbformat.write(nb, str(path))
    return path


def trivial_notebook(folder: Path) -> Path:
    return write_notebook(folder / "trivial.ipynb", "n = 0", "y = n * 2\nprint(y)")


def sleep_notebook(folder: Path) -> Path:
    return write_notebook(folder / "sleepy.ipynb", "seconds = 1.0", "import time\ntime.sleep(seconds)")


# -- runtool fixtures -----------------------------------------------------------------


def new_run(i: int, notebook: str = "/bench/detection.ipynb", kind: str = "detection",
            queue: str = "default") -> Any:
    """The run `RunQueue.submit` would store, built without parsing a notebook."""
    from runtool.models import NewRun

    return NewRun(notebook=notebook, kind=kind, queue=queue, priority=0,
                  parameters={"threshold": 0.5, "n": i}, tags={"batch": str(i // 100)},
                  max_attempts=4, kernel="python3")


#: The claimant of runs claimed by benchmarks (a live process: this one).
def claimant(name: str = "bench") -> Any:
    from runtool.models import Claimant

    return Claimant(name, os.getpid(), 0.0, "bench")


def fill_finished(home: Path, count: int, progress: Callable[[int], None] | None = None) -> None:
    """Store `count` finished runs through the Store API: 90% succeeded, 7% failed, 3% cancelled.

    Two kinds and two queues, as a detection/training setup would have. Meant to be built on
    FAST_SCRATCH and copied to disk: through the API every run costs 2-3 transactions.
    """
    from runtool import RunQueue, lifecycle
    from runtool.models import Change, Status

    q = RunQueue(home, user="bench")
    store, me = q.store, claimant()
    kinds = [("/bench/detection.ipynb", "detection", "detection"),
             ("/bench/training.ipynb", "training", "default")]
    for i in range(count):
        notebook, kind, queue = kinds[i % 5 == 0]
        run = lifecycle.submit(store, new_run(i, notebook, kind, queue), "bench")
        if i % 100 in (7, 57, 97):  # 3 %
            lifecycle.change(store, run.id, [Status.WAITING], Change(Status.CANCELLED, "bench", "cancelled"),
                             "cancel")
            continue
        claimed = store.claim([queue], me)
        assert claimed is not None and claimed.id == run.id
        if i % 100 in (3, 13, 23, 33, 43, 63, 83):  # 7 %
            error = {"type": "ValueError", "message": f"bad input {i}", "cell": 3,
                     "traceback": "Traceback (most recent call last):\n  ...\nValueError"}
            lifecycle.change(store, run.id, [Status.PROCESSING], Change(Status.FAILED, "bench", "failed", error),
                             "record failure", attempt=claimed.attempt)
        else:
            lifecycle.change(store, run.id, [Status.PROCESSING], Change(Status.SUCCEEDED, "bench", "done"),
                             "record success", attempt=claimed.attempt)
        if progress and i % 5000 == 0:
            progress(i)
    q.close()


def runtool_fixture(count: int) -> Path:
    """A closed runtool.db holding `count` finished runs, built once per suite run.

    Cached in $RUNTOOL_BENCH_FIXTURES (run_all.py sets it and removes it at the end),
    else in a folder of FAST_SCRATCH removed when this process exits.
    """
    cache = os.environ.get("RUNTOOL_BENCH_FIXTURES")
    if not cache:
        global _own_fixtures
        if _own_fixtures is None:
            _own_fixtures = Path(tempfile.mkdtemp(prefix="rtbench-fixtures-", dir=FAST_SCRATCH))
            atexit.register(shutil.rmtree, _own_fixtures, True)
        cache = str(_own_fixtures)
    home = Path(cache) / f"runtool-{count}"
    db = home / "runtool.db"
    if not (home / "complete").exists():
        shutil.rmtree(home, ignore_errors=True)
        t0 = time.perf_counter()
        fill_finished(home, count)
        (home / "complete").write_text(f"{time.perf_counter() - t0:.1f}")
        say(f"  built a runtool store with {count} finished runs in {time.perf_counter() - t0:.1f} s")
    return db


def fixture_build_seconds(count: int) -> float | None:
    cache = os.environ.get("RUNTOOL_BENCH_FIXTURES") or (str(_own_fixtures) if _own_fixtures else None)
    marker = Path(cache) / f"runtool-{count}" / "complete" if cache else None
    return float(marker.read_text()) if marker and marker.exists() else None


def copy_store(src: Path, dst: Path) -> None:
    """Copy a closed SQLite file (no -wal left after its last connection closed)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        if Path(str(src) + suffix).exists():
            shutil.copyfile(str(src) + suffix, str(dst) + suffix)


def wait_finished(q: Any, run_id: int, timeout: float = 120.0) -> Any:
    """The run once it succeeded or failed (a worker elsewhere executes it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = q.get(run_id)
        if run.status.value in ("succeeded", "failed"):
            return run
        time.sleep(0.05)
    raise RuntimeError(f"run {run_id} did not finish")


# -- statistics -----------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (p in 0..100), as numpy's default does."""
    data = sorted(values)
    if not data:
        return math.nan
    k = (len(data) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def summary(values: Sequence[float]) -> dict[str, Any]:
    return {"median": median(values), "p95": percentile(values, 95), "min": min(values),
            "max": max(values), "n": len(values), "values": list(values)}


def time_steps(step: Callable[[], Any], repeat: int,
               clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """`step()` called `repeat` times: how long each call took, in ms by `clock`
    (time.perf_counter: wall-clock; time.process_time: this process's CPU time)."""
    times = []
    for _ in range(repeat):
        started = clock()
        step()
        times.append((clock() - started) * 1000)
    return times


def time_cases(cases: Mapping[str, tuple[Callable[[], Any], Callable[[], Any]]], repeat: int,
               clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """For each case (prepare, step), in order: `prepare()` once, then `time_steps(step)`."""
    results = {}
    for name, (prepare, step) in cases.items():
        prepare()
        results[name] = time_steps(step, repeat, clock)
    return results


def median_max(times_ms: Sequence[float]) -> dict[str, float]:
    """{"median_ms", "max_ms"} of step times in ms, to 0.01 ms."""
    return {"median_ms": round(median(times_ms), 2), "max_ms": round(max(times_ms), 2)}


def median_max_line(seconds: Sequence[float]) -> str:
    """ "median 12.3 ms, max 45.6 ms" of times in seconds."""
    return f"median {median(seconds) * 1000:.1f} ms, max {max(seconds) * 1000:.1f} ms"


def interleaved(rounds: int, contenders: Mapping[str, Callable[[], Any]],
                log: Callable[[str], None] | None = None) -> dict[str, list[Any]]:
    """Run every contender once per round, round after round (A B C, B C A, C A B, ...).

    Interleaving spreads the machine's background noise over all contenders; rotating the
    order keeps any one of them from always running first (cold caches) or last.
    """
    names = list(contenders)
    results: dict[str, list[Any]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            results[name].append(contenders[name]())
            if log:
                log(f"  round {r + 1}/{rounds} {name}: {_short(results[name][-1])}")
    return results


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and value and all(isinstance(v, float) for v in value):
        return f"median {median(value) * 1000:.3f} ms of {len(value)}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_short(v)}" for k, v in value.items() if not isinstance(v, (list, dict)))
    return str(value)


# -- results --------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for pkg in ("runtool", "papermill", "nbclient", "ipykernel", "huey", "persist-queue",
                "litequeue", "matplotlib", "pyinstrument", "psutil"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "runtool"],
                               capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        commit, dirty = "", ""
    return {
        "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        "loadavg": os.getloadavg(), "commit": commit + (" + uncommitted runtool/ changes" if dirty else ""),
        "versions": versions, "at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = dict(data, environment=environment())
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=1, default=str))
    return path


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def say(text: str) -> None:
    print(text, flush=True)


def main_args(description: str) -> Any:
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer rounds, smaller sizes")
    return parser.parse_args()
