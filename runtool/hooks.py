"""The `on_finish` hook of runtool.toml: a shell command run once per finished run.

The worker starts it after the outcome is recorded and does not wait: a detached supervisor
(forked twice, so the worker has nothing to reap) runs the command with the run's id, status,
kind, run folder and metrics in its environment, ends it after `[hooks] timeout`, and writes
what it printed and how it ended to `hook.log` in the run folder and to the worker's log.
Nothing a hook does changes the run or the worker.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
from pathlib import Path
from typing import BinaryIO

from .config import HOOK_LOG_FILE, Settings
from .models import FINISHED, Run

log = logging.getLogger("runtool.worker")
#: Seconds between asking a timed-out hook to stop (SIGTERM) and killing it.
HOOK_GRACE_S = 2.0


def environment(run: Run, home: Path) -> dict[str, str]:
    """What the hook learns about the run, as RUNTOOL_* variables."""
    error = f"{run.error['type']}: {run.error['message']}" if run.error else ""
    return {
        "RUNTOOL_RUN_ID": str(run.id), "RUNTOOL_STATUS": run.status.value, "RUNTOOL_KIND": run.kind,
        "RUNTOOL_RUN_DIR": run.run_dir, "RUNTOOL_METRICS": json.dumps(run.metrics),
        "RUNTOOL_QUEUE": run.queue, "RUNTOOL_ERROR": error, "RUNTOOL_HOME": str(home),
    }


def on_finish(settings: Settings, run: Run | None, home: Path) -> None:
    """Start the on_finish hook for `run` if it finished and a hook is set; returns at once."""
    if not settings.on_finish or run is None or run.status not in FINISHED:
        return
    env = {**os.environ, **environment(run, home)}
    try:
        pid = os.fork()
    except OSError as exc:
        log.info("run %d: on_finish hook not started: %s", run.id, exc)
        return
    if pid == 0:  # the first child: starts the supervisor and leaves at once
        code = 0
        try:
            os.setsid()
            if os.fork() == 0:
                _supervise(settings.on_finish, env, run, settings.hook_timeout)
        except BaseException:  # noqa: BLE001 - a forked child never returns into the worker
            code = 1
        finally:
            os._exit(code)
    os.waitpid(pid, 0)


def _supervise(command: str, env: dict[str, str], run: Run, timeout: float) -> None:
    """In the detached supervisor: run the hook, bounded by `timeout`; never returns."""
    try:
        # stdin and stdout let go (a `drain` under cron is not held open by them); stderr
        # stays: it is the worker's log, where a failing or hanging hook is reported
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        # nor does it hold the worker's other descriptors (its runner's pipes, the store)
        os.closerange(3, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") > 0 else 4096)
        folder = Path(run.run_dir)
        if not folder.is_dir():  # never started, or deleted since: not made again for a log
            outcome = _run(command, env, Path(env["RUNTOOL_HOME"]), None, timeout)
            if outcome != "exited with 0":
                log.info("run %d: on_finish hook %s", run.id, outcome)
            return
        with open(folder / HOOK_LOG_FILE, "ab") as out:
            outcome = _run(command, env, folder, out, timeout)
            out.write(f"[runtool] {outcome}\n".encode())
        if outcome != "exited with 0":
            log.info("run %d: on_finish hook %s (see %s)", run.id, outcome, folder / HOOK_LOG_FILE)
    except BaseException as exc:  # noqa: BLE001 - logged, never raised into anything
        log.info("run %d: on_finish hook failed to run: %s", run.id, exc)
    finally:
        os._exit(0)


def _run(command: str, env: dict[str, str], cwd: Path, out: BinaryIO | None, timeout: float) -> str:
    proc = subprocess.Popen(command, shell=True, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=out or subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        return f"exited with {proc.wait(timeout)}"
    except subprocess.TimeoutExpired:
        pass
    # its own session: the whole group (the shell and what it started) is ended
    for sig, wait in ((signal.SIGTERM, HOOK_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    return f"timed out after {timeout:g} s and was ended"
