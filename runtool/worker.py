"""The worker and drain loops: claim one runnable run at a time and execute it.

Claims happen only while holding the executor lock, and the forked runner inherits the
lock, so at most one run executes per home (per machine, with a shared store) however many
workers and drains share it. While a run executes its lease (`lease.py`) renews the
heartbeat; a run found no longer its own (reconciled away while this worker was frozen or
cut off, or cancelled) has its processes ended and nothing recorded.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

import psutil

from . import attempts, cleanup, hooks, lifecycle, outcomes
from .api import RunQueue
from .errors import IllegalTransition, RuntoolError, StoreUnavailable
from .faults import crash_point as _crash_point
from .lease import Lease
from .models import Change, Claimant, ErrorRecord, Run, Status, WorkerInfo
from .params import RUNTIME_PARAMETERS, read_notebook
from .processes import ahead_token, end_run, run_token
from .queue import Store, open_store

if TYPE_CHECKING:
    from . import runner, warmstart

log = logging.getLogger("runtool.worker")
#: How the watch of a runner ended: it exited by itself, or the worker ended it because of the
#: run's timeout, a second signal to the worker, a force-cancel asked from another machine, the
#: run found no longer this attempt's ("fenced"), or heartbeats that no longer reach the store.
Verdict = Literal["exited", "timeout", "stopped", "cancelled", "fenced", "lease lost"]
#: How often a sleeping worker checks for signals (the store wakes it for new work).
WAKE_CHECK_S = 0.1
#: The longest one wait for the store's news lasts before signals are checked.
WAKE_SLICE_S = 0.25
RETENTION_EVERY_S = 3600.0
#: How long a finished run waits for its lease's thread to end (longer only if its store hangs).
LEASE_JOIN_S = 5.0
#: Seconds between two tries while the store is unavailable (locked, read-only, disk full).
STORE_RETRY_S = 5.0
#: Runners kept started ahead while more runs are runnable (one while idle): back-to-back runs
#: shorter than a kernel's start would otherwise wait for it every other run.
AHEAD_IN_BACKLOG = 2


def setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        f"%(asctime)s runtool[{os.getpid()}] %(message)s", "%Y-%m-%dT%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)


@dataclass
class Limits:
    max_runs: int | None = None
    max_time: float | None = None


class Worker:
    def __init__(self, q: RunQueue, queues: Sequence[str] = (), poll: float | None = None,
                 limits: Limits | None = None) -> None:
        self.q = q
        self.queues = list(queues) or list(q.settings.queues or [])
        self.poll = poll if poll is not None else q.settings.poll
        self.limits = limits or Limits()
        self.machine = q.machine
        self.name = f"{self.machine}:{os.getpid()}"
        self.claimant = Claimant(self.name, os.getpid(), psutil.Process().create_time(), self.machine)
        self.stale_after = q.settings.stale_after
        self.signals = 0
        self.executed = 0
        self.started = time.monotonic()
        self._last_retention = 0.0
        self._last_reconcile = 0.0
        self._last_beat = 0.0
        self.kind = "worker"
        self.prestart = q.settings.prestart
        self._warm: warmstart.Aheads | None = None
        """Runners forked ahead with kernels for the next runs (warm start), once papermill is in."""
        self._forked_ahead = 0

    # -- signals ------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1
        if self.signals == 1:
            log.info("%s: finishing the current run, then stopping (again to stop now)",
                     signal.Signals(signum).name)

    @property
    def stopping(self) -> bool:
        return self.signals > 0

    def _limits_reached(self) -> bool:
        if self.limits.max_runs is not None and self.executed >= self.limits.max_runs:
            return True
        return self.limits.max_time is not None and time.monotonic() - self.started >= self.limits.max_time

    # -- loops --------------------------------------------------------------------

    def warm_up(self) -> None:
        """Import papermill and fill its caches once, here, instead of in every run."""
        from . import runner, warmstart

        runner.prewarm()
        if self.prestart and self._warm is None:
            self._warm = warmstart.Aheads(self._ahead_token, self._forget_lock)

    def serve(self) -> int:
        """The `worker` command: run until told to stop; 0 on a graceful stop."""
        self.warm_up()
        log.info("worker %s serving %s", self.name, ", ".join(self.queues) or "all queues")
        try:
            while not self.stopping and not self._limits_reached():
                try:  # a long-lived worker waits out an unavailable store instead of dying
                    self._look_after_the_fleet()
                    self._apply_retention()
                    if self._execute_next() is None:
                        self._renew_row()
                        self._sleep_until_work()
                except StoreUnavailable as exc:
                    log.info("%s; trying again in %g s", exc, STORE_RETRY_S)
                    self._pause(STORE_RETRY_S, signals=1)
                if self.signals > 1:
                    return 1
        finally:
            self._discard_ahead()
            self._leave()
        log.info("worker %s stopped after %d run(s)", self.name, self.executed)
        return 0

    def drain(self) -> tuple[int, str]:
        """The `drain` command: execute runnable runs until none is runnable now."""
        self.kind = "drain"
        self._reconcile()
        if not self.q.store.has_runnable(self.queues, self.q.store.now()):
            return 0, "executed 0 run(s)"
        if not self.q.lock.try_acquire(f"{self.name} drain"):
            executing = [r for r in self.q.store.processing() if cleanup.is_local(self.q.store, r, self.machine)]
            what = f"run {executing[-1].id}" if executing else "a run"
            where = f"on machine {self.machine}" if self.q.store.shared else f"in {self.q.home}"
            return 0, f"another process is executing {what} {where}; not starting"
        try:
            self.warm_up()  # only now: an extra drain leaves without paying for papermill
            while not self.stopping and not self._limits_reached():
                self._look_after_the_fleet()
                if self._execute_next() is None:
                    break
                if self.signals > 1:
                    return 1, "stopped by a second signal"
        finally:
            self._discard_ahead()
            self.q.lock.release()
            self._leave()
        return 0, f"executed {self.executed} run(s)"

    def _reconcile(self) -> None:
        self._last_reconcile = time.monotonic()
        for line in self.q.reconcile():
            log.info("%s", line)

    def _info(self, run: Run | None = None) -> WorkerInfo:
        return WorkerInfo(self.name, self.machine, os.getpid(), self.queues, 0.0, 0.0,
                          run.id if run else None, self.kind)

    def _look_after_the_fleet(self) -> None:
        """Look for stale runs (another machine's too) every stale_after, so that a dead
        machine's run is taken over without anyone asking."""
        if not self._last_reconcile or time.monotonic() - self._last_reconcile >= self.stale_after:
            self._reconcile()

    def _renew_row(self) -> None:
        """While idle, renew this worker's row in `workers` every stale_after/4 (while a run
        executes the lease does). Only when idle: a write must never come between the
        executor lock and the claim, nor keep an idle worker from its next look."""
        now = time.monotonic()
        if now - self._last_beat >= self.stale_after / 4:
            self._last_beat = now
            self.q.store.worker_beat(self._info())

    def _leave(self) -> None:
        try:
            self.q.store.worker_gone(self.name)
        except StoreUnavailable:
            pass  # seen as gone once its heartbeat is stale_after old
    def _apply_retention(self) -> None:
        # at start, then hourly: [retention]'s purge (when set) and gone workers' rows
        if not self._last_retention or time.monotonic() - self._last_retention > RETENTION_EVERY_S:
            self._last_retention = time.monotonic()
            removed = cleanup.apply_retention(self.q.store, self.q.settings.retention)
            if removed:
                log.info("retention purged %d run(s)", len(removed))

    def _sleep_until_work(self) -> None:
        """Sleep up to `poll`, waking early for a commit by another process or a due run."""
        now = self.q.store.now()
        due = self.q.store.next_due(now)
        # monotonic from here: the store's clock only says how far off the next due run is
        until = time.monotonic() + (self.poll if due is None else min(self.poll, due - now))
        until = min(until, self._last_beat + self.stale_after / 4, self._last_reconcile + self.stale_after)
        # (both were just done, so `until` lies ahead: no busy loop)
        if self.q.store.wait_for_change(0):  # news since the last look (this also starts listening)
            return
        self._check_ahead()
        while not self.stopping and time.monotonic() < until:
            # in slices, so that a signal is noticed within one
            if self.q.store.wait_for_change(min(WAKE_SLICE_S, max(0.0, until - time.monotonic()))):
                return

    def _execute_next(self) -> Run | None:
        """Claim and execute one run; None if nothing is runnable now (or another executes)."""
        held_before = self.q.lock.held
        if not self.q.store.has_runnable(self.queues, self.q.store.now()):
            return None
        if not held_before and not self.q.lock.try_acquire(f"{self.name} worker"):
            return None
        try:
            run = self.q.store.claim(self.queues, self.claimant)
            if run is None:
                return None
            self.q.lock.note(f"{self.name} run {run.id}")
            self._execute(run)
            self.executed += 1
            return run
        finally:
            if not held_before:
                self.q.lock.release()

    # -- one run ------------------------------------------------------------------

    def _execute(self, run: Run) -> None:
        from . import runner

        log.info("run %d: claimed (%s, attempt %d of %d)", run.id, run.kind, run.attempt, run.max_attempts)
        _crash_point("claimed")
        began = time.monotonic()
        try:
            parameters = self._parameters(run)
            key = self._kernel_key(run)
        except Exception as exc:  # the notebook vanished or changed since submit
            error = runner.error_from(exc)
            self._until_recorded(run, lambda: hooks.on_finish(
                self.q.settings, self._fail(run, error, f"could not start: {error['message']}"), self.q.home))
            log.info("run %d: could not start: %s", run.id, error["message"])
            return
        child = self._start(run, parameters, key)
        # forks first, then the lease's thread: a process forked while another thread holds a
        # lock inherits it held, and the next run's runner would hang on it
        self._start_ahead(key)  # the next runs' kernels start while this one executes
        lease = Lease(self._lease_store, run, self.name, self.stale_after, also=self._while_executing(run))
        lease.runner, lease.kernel = (child.pid, child.ctime), child.kernel
        lease.start()
        try:
            verdict, status = self._watch(run, child, lease)
        finally:
            lease.stop()
            lease.join(timeout=LEASE_JOIN_S)  # gone before anything forks again (a hung one is left)
        child.read_reports()
        child.close()
        self._end(run, child, grace=1.0)  # whatever the notebook left behind
        elapsed = time.monotonic() - began
        _crash_point("executed")
        if verdict == "fenced":
            log.info("run %d: no longer this attempt's (cancelled or taken over elsewhere); ended its"
                     " processes, recorded nothing", run.id)
            return
        self._until_recorded(run, lambda: self._record(run, child, status, verdict, elapsed, lease))

    def _while_executing(self, run: Run) -> Callable[[Store], None]:
        """What the lease thread also does at each heartbeat: renew this worker's row, and
        look for other machines' stale runs every stale_after (this run is not: its worker
        is alive and holds the lock)."""
        def also(store: Store) -> None:
            store.worker_beat(self._info(run))
            if time.monotonic() - self._last_reconcile >= self.stale_after:
                self._last_reconcile = time.monotonic()
                try:
                    for line in cleanup.reconcile(store, self.q.lock, self.q.settings.retry_base_delay,
                                                  self.machine, self.stale_after):
                        log.info("%s", line)
                except RuntoolError as exc:
                    log.info("reconcile: %s", exc)
        return also

    def _files(self, run: Run) -> Path:
        return attempts.files_dir(run, self.q.store.shared)

    def _lease_store(self) -> Store:
        """A store connection of the lease's own (opened in its thread)."""
        return open_store(self.q.home, self.q.settings)

    def _parameters(self, run: Run) -> dict[str, Any]:
        declared = read_notebook(run.notebook).parameters
        values = dict(run.parameters)
        runtime: dict[str, Any] = {"run_id": run.id, "run_dir": str(self._files(run))}
        if run.after:
            runtime.update(parent_run_id=run.after[0], parent_run_dir=str(self.q.runs_dir / str(run.after[0])),
                           parent_run_dirs=[str(self.q.runs_dir / str(p)) for p in run.after])
        for name in RUNTIME_PARAMETERS:
            if name in declared and name in runtime:
                values[name] = runtime[name]
        return values

    def _kernel_key(self, run: Run) -> runner.KernelKey | None:
        """The kernel name and folder `run` executes in (None: papermill will say what is wrong)."""
        from . import runner

        kernel = run.kernel or read_notebook(run.notebook).kernel
        return runner.KernelKey(kernel, str(Path(run.notebook).parent)) if kernel else None

    # -- warm start ---------------------------------------------------------------

    def _start(self, run: Run, parameters: dict[str, Any], key: runner.KernelKey | None) -> runner.Child:
        """A runner executing `run`: one started ahead if its kernel fits, else a new one."""
        from . import runner

        if self._warm is None or key is None:
            return runner.start(run, parameters, run.kernel, str(self._files(run)))
        return self._warm.take(key, run, parameters, str(self._files(run)))

    def _start_ahead(self, key: runner.KernelKey | None) -> None:
        """Right after a claim: fork runners whose kernels start now for the next runs, guessed
        to be like this one: two while more runs are runnable, else one (fewer near the end)."""
        if self._warm is None or key is None:
            return
        self._warm.top_up(key, self._ahead_depth(backlog=True))

    def _ahead_depth(self, backlog: bool) -> int:
        """How many runners to keep started ahead; `backlog`: look whether more runs are runnable."""
        if self.stopping:
            return 0
        depth = 1
        if backlog:
            try:  # a read after the claim, before the lease's thread starts
                depth = AHEAD_IN_BACKLOG if self.q.store.has_runnable(self.queues, self.q.store.now()) else 1
            except StoreUnavailable:
                pass
        if self.limits.max_runs is not None:
            depth = min(depth, self.limits.max_runs - self.executed - 1)
        return max(0, depth)

    def _ahead_token(self) -> str:
        self._forked_ahead += 1
        return ahead_token(str(self.q.runs_dir), self.name, self._forked_ahead)

    def _forget_lock(self) -> None:
        """In a runner started ahead: close its copy of the executor lock, which the worker keeps
        (flock: the lock stays held until every copy is closed, so an idle runner would hold it)."""
        self.q.lock.release()

    def _check_ahead(self) -> None:
        """While idle: replace a kernel started ahead that died, without failing any run; keep one."""
        if self._warm is not None and self._warm.check(self._ahead_depth(backlog=False)):
            log.info("a kernel started ahead is gone; started another")

    def _discard_ahead(self) -> None:
        if self._warm is not None:
            self._warm.discard()

    def _watch(self, run: Run, child: runner.Child, lease: Lease) -> tuple[Verdict, int | None]:
        """Wait for the runner to end; returns the verdict and its exit code.

        The verdict is 'exited', 'timeout', 'stopped' (second signal), 'fenced' (the run is
        no longer this attempt's), 'cancelled' (a force-cancel asked from another machine)
        or 'lease lost' (no heartbeat reached a shared store for most of stale_after).
        """
        deadline = time.monotonic() + run.timeout_s if run.timeout_s else None
        shared = self.q.store.shared
        verdict: Verdict = "exited"
        while True:
            try:
                pid, status = os.waitpid(child.pid, os.WNOHANG)
            except ChildProcessError:  # already reaped while its processes were ended
                return verdict, None
            if pid:
                return verdict, os.waitstatus_to_exitcode(status)
            if verdict != "exited":  # ended by us: wait for the runner to be gone
                time.sleep(0.05)
                continue
            select.select([child.reports], [], [], 0.05)
            child.read_reports()
            if child.news:
                lease.kernel, lease.progress = child.kernel, child.progress
                lease.poke()
            child.news.clear()
            if lease.lost:
                verdict = "fenced"
            elif lease.cancel is not None:
                verdict = "cancelled"
            elif shared and lease.expired():
                verdict = "lease lost"
                log.info("run %d: no heartbeat reached the store for %.0f s; ending the run", run.id,
                         time.monotonic() - lease.renewed)
            if deadline is not None and time.monotonic() >= deadline:
                verdict = "timeout"
            if self.signals > 1:
                verdict = "stopped"
            if verdict != "exited":
                self._end(run, child, grace=0.5 if verdict in ("fenced", "lease lost") else 2.0)

    def _until_recorded(self, run: Run, record: Callable[[], object]) -> None:
        """Record an outcome, retrying while the store is unavailable (locked, read-only, full).

        Only a second signal stops the retries: the run then stays processing, for reconcile.
        """
        while True:
            try:
                record()
                return
            except StoreUnavailable as exc:
                if self.signals > 1:
                    log.info("run %d: outcome not recorded (%s); reconcile will repair it", run.id, exc)
                    return
                log.info("run %d: cannot record the outcome yet: %s; trying again in %g s",
                         run.id, exc, STORE_RETRY_S)
                self._pause(STORE_RETRY_S, signals=2)

    def _pause(self, seconds: float, signals: int) -> None:
        """Sleep, waking early once this many signals have arrived."""
        until = time.monotonic() + seconds
        while self.signals < signals and time.monotonic() < until:
            time.sleep(min(WAKE_CHECK_S, max(0.0, until - time.monotonic())))

    def _end(self, run: Run, child: runner.Child, grace: float = 2.0) -> None:
        """End every process of this attempt: runner, kernel, and all carrying its token."""
        end_run(run_token(run.run_dir, run.started_at), [(child.pid, child.ctime), child.kernel or (None, None)],
                grace=grace)

    def _fail(self, run: Run, error: ErrorRecord, reason: str) -> Run | None:
        return outcomes.fail_attempt(self.q.store, run, error, self.name, reason, self.q.settings.retry_base_delay,
                                     no_retry=self.q.settings.no_retry)

    def _record(self, run: Run, child: runner.Child, status: int | None, verdict: Verdict, elapsed: float,
                lease: Lease) -> None:
        q, by = self.q, self.name
        if verdict == "stopped":
            back = Change(Status.WAITING, by, "worker stopped by a second signal; attempt not counted",
                          attempt="uncount")
            lifecycle.change(q.store, run.id, [Status.PROCESSING], back, "requeue", attempt=run.attempt,
                             then=outcomes.owner(q.store, run))
            log.info("run %d: stopped after %.1f s, back to waiting", run.id, elapsed)
            return
        if verdict == "cancelled" and lease.cancel is not None:
            asker, why = lease.cancel
            ended = Change(Status.CANCELLED, asker, f"{why}; process tree ended on machine {self.machine}")
            try:
                cancelled = lifecycle.change(q.store, run.id, [Status.PROCESSING], ended, "force-cancel",
                                             attempt=run.attempt, then=outcomes.owner(q.store, run))
            except IllegalTransition:
                pass  # the asker gave up waiting and cancelled it itself
            else:
                hooks.on_finish(q.settings, cancelled, q.home)
            log.info("run %d: force-cancelled from another machine by %s (%.1f s)", run.id, asker, elapsed)
            return
        error: ErrorRecord
        if verdict == "lease lost":
            error = {"type": "LeaseLost", "message": f"lease lost: no heartbeat reached the store for"
                     f" {self.stale_after * 0.75:g} s; the worker ended the run",
                     "cell": child.progress[0] + 1 if child.progress else None, "traceback": ""}
        elif verdict == "timeout":
            error = {"type": "Timeout", "message": f"run exceeded its timeout of {run.timeout_s:g} s",
                     "cell": child.progress[0] + 1 if child.progress else None, "traceback": ""}
        elif status == 0 and child.error is None:
            done = outcomes.succeed(q.store, run, by, f"finished in {elapsed:.1f} s")
            log.info("run %d: succeeded in %.1f s%s", run.id, elapsed,
                     "" if done else " (not recorded: no longer this attempt's)")
            hooks.on_finish(q.settings, done, q.home)
            return
        else:
            error = child.error or _runner_died(status, child.progress)
        result = self._fail(run, error, f"{error['type']}: {error['message']}")
        outcome = result.status.value if result else "not recorded: no longer this attempt's (cancelled or taken over)"
        if result is not None and result.status is Status.WAITING:
            outcome = "waiting for retry"
        log.info("run %d: failed in %.1f s (%s: %s) -> %s", run.id, elapsed, error["type"],
                 error["message"][:200], outcome)
        hooks.on_finish(q.settings, result, q.home)


def _runner_died(status: int | None, progress: tuple[int, int] | None) -> ErrorRecord:
    where = f" during cell {progress[0] + 1} of {progress[1]}" if progress else ""
    how = f"killed by signal {-status}" if status is not None and status < 0 else f"exited with {status}"
    return {"type": "RunnerDied", "message": f"runner {how}{where}",
            "cell": progress[0] + 1 if progress else None, "traceback": ""}
