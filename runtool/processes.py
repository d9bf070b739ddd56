"""Finding and ending every process of a run.

A run's processes are found three ways, so that none escapes: the recorded runner and
kernel (pid plus start time, since pids are reused), their descendants, and any process
whose environment carries the attempt's token (a grandchild orphaned by a dead kernel keeps it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

import psutil

TOKEN_VAR = "RUNTOOL_RUN_TOKEN"
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def run_token(run_dir: str, started_at: float | None) -> str:
    """The token of one attempt: the run folder and the time of the attempt's claim.

    Per attempt, not per run: ending a dead attempt's processes must never reach a later
    attempt of the same run that a live worker has started meanwhile.
    """
    return f"{run_dir}#{started_at!r}"


def ahead_token(runs_dir: str, worker: str, count: int) -> str:
    """The token of a kernel started ahead while its run is unknown (`worker`'s `count`-th).

    Once the run is claimed, the attempt's token is set in that kernel before any cell runs,
    so all the run's processes carry it; the kernel itself is found by its recorded pid. Under
    the runs folder, so a leftover one is found like any run's process.
    """
    return f"{runs_dir}{os.sep}ahead#{worker}#{count}"


def die_with_parent() -> None:
    """In a freshly forked child: be killed when the parent dies (Linux prctl)."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def identity(pid: int) -> tuple[int, float] | None:
    """(pid, start time) of a live process, or None."""
    try:
        return pid, psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def alive(pid: int | None, ctime: float | None) -> bool:
    """True if the process that had this pid and start time still runs (not a reused pid)."""
    if pid is None or ctime is None:
        return False
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - ctime) < 0.05 and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def run_processes(token: str, known: list[tuple[int | None, float | None]]) -> list[psutil.Process]:
    """Every live process of the run: `known` (pid, start time) pairs, descendants, token holders."""
    found: dict[int, psutil.Process] = {}
    for pid, ctime in known:
        if pid is not None and alive(pid, ctime):
            proc = psutil.Process(pid)
            found[pid] = proc
            try:
                for child in proc.children(recursive=True):
                    found[child.pid] = child
            except psutil.Error:
                pass
    for proc in psutil.process_iter():
        if proc.pid in found:
            continue
        try:
            if proc.environ().get(TOKEN_VAR) == token:
                found[proc.pid] = proc
        except psutil.Error:
            continue
    found.pop(os.getpid(), None)
    return list(found.values())


def end_processes(procs: list[psutil.Process], grace: float = 3.0) -> list[psutil.Process]:
    """Terminate, wait up to `grace` seconds, then kill; returns the processes still alive."""
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive_procs = psutil.wait_procs(procs, timeout=grace)
    for proc in alive_procs:
        try:
            proc.kill()
        except psutil.Error:
            pass
    _, still = psutil.wait_procs(alive_procs, timeout=5)
    return still


def end_run(token: str, known: list[tuple[int | None, float | None]], grace: float = 3.0) -> int:
    """End every process of a run; returns how many there were. Repeats until none is found."""
    total = 0
    for _ in range(5):
        procs = run_processes(token, known)
        if not procs:
            break
        total += len(procs)
        end_processes(procs, grace)
    return total
