"""Repairing stale runs, cancelling, deleting and purging: the actions that end runs early.

`reconcile` is the one place that repairs runs left `processing` by a dead worker; it
writes down why it moved each run, and costs one indexed query when nothing is stale.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from . import attempts, lifecycle, outcomes
from .config import GONE_WORKER_KEPT_S, OUTPUT_FILE
from .errors import IllegalTransition
from .lock import ExecutorLock
from .models import FINISHED, Change, ErrorRecord, Run, Status
from .processes import alive, end_run, run_token
from .queue import Store

#: How often a force-cancel from another machine looks whether the run's worker confirmed.
CANCEL_CHECK_S = 0.2
#: What an output notebook says about the attempt that wrote it.
Evidence = Literal["succeeded", "failed", "unfinished"]


def known_processes(run: Run) -> list[tuple[int | None, float | None]]:
    return [(run.runner_pid, run.runner_ctime), (run.kernel_pid, run.kernel_ctime)]


def is_local(store: Store, run: Run, machine: str) -> bool:
    """Whether the run's processes are on this machine (always, on a one-machine store)."""
    return not store.shared or run.machine in (None, machine)


def staleness(run: Run, lock: ExecutorLock, local: bool, now: float, stale_after: float) -> str | None:
    """Why nothing executes this processing run any more, or None if something may.

    On its own machine: its worker process is gone (pid and start time) or the executor lock
    is free, known at once. From another machine, which cannot see those processes: its
    heartbeat is older than `stale_after` by the store's clock.
    """
    if run.status is not Status.PROCESSING:
        return None
    if local:
        if not alive(run.worker_pid, run.worker_ctime):
            return f"worker {run.worker} gone"
        return "executor lock free" if lock.is_free() else None
    beat = run.heartbeat_at if run.heartbeat_at is not None else run.started_at
    age = now - (beat or 0.0)
    if age > stale_after:
        return f"no heartbeat from machine {run.machine} for {age:.0f} s"
    return None


def reconcile(store: Store, lock: ExecutorLock, retry_base_delay: float, machine: str,
              stale_after: float) -> list[str]:
    """Repair every stale run; one line per change. Idempotent."""
    changes = []
    processing = store.processing()
    now = store.now() if processing else 0.0
    for run in processing:
        local = is_local(store, run, machine)
        gone = staleness(run, lock, local, now, stale_after)
        if gone is None:
            continue
        # another machine's processes are its own to end (its worker fences itself)
        ended = end_run(run_token(run.run_dir, run.started_at), known_processes(run)) if local else 0
        files = attempts.files_dir(run, store.shared)
        verdict, error = _evidence(files / OUTPUT_FILE if files.is_dir() else Path(run.output_path),
                                   run.started_at)
        leftovers = f"; ended {ended} leftover process(es)" if ended else ""
        if verdict == "succeeded":
            reason = f"reconciled: {gone}; output notebook finished without exception{leftovers}"
            result = outcomes.succeed(store, run, "reconcile", reason)
        else:
            assert error is not None
            what = f"output notebook ended with {error['type']}" if verdict == "failed" else error["message"]
            reason = f"reconciled: {gone}; {what}{leftovers}"
            result = outcomes.fail_attempt(store, run, error, "reconcile", reason, retry_base_delay,
                                           retry=verdict == "unfinished")
        if result is not None:
            changes.append(f"run {run.id}: processing -> {result.status.value} ({reason})")
    return changes


def _evidence(output: Path, since: float | None = None) -> tuple[Evidence, ErrorRecord | None]:
    """What the output notebook says: succeeded, failed (with its error) or unfinished.

    A notebook last written before `since` (the attempt's start) is an earlier attempt's:
    no evidence about this one, which died before writing its own.
    """
    try:
        if since is not None and output.stat().st_mtime < since:
            raise FileNotFoundError(output)
        nb = json.loads(output.read_text(encoding="utf-8"))
        cells = nb["cells"]
        meta = nb.get("metadata", {}).get("papermill", {})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "unfinished", _died("worker died before the output notebook was written", None)
    states = [c.get("metadata", {}).get("papermill", {}).get("status") for c in cells]
    for index, cell in enumerate(cells):
        if states[index] == "failed":
            return "failed", _cell_error(cell, index)
    if meta.get("end_time") and not meta.get("exception") and all(
        s == "completed" for s, c in zip(states, cells) if c.get("cell_type") == "code"
    ):
        return "succeeded", None
    running = next((i for i, s in enumerate(states) if s == "running"), None)
    if running is None:
        running = next((i for i, s in enumerate(states) if s != "completed"), len(cells) - 1)
    return "unfinished", _died(f"worker died during cell {running + 1} of {len(cells)}", running + 1)


def _died(message: str, cell: int | None) -> ErrorRecord:
    return {"type": "WorkerDied", "message": message, "cell": cell, "traceback": ""}


def _cell_error(cell: dict, index: int) -> ErrorRecord:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return {"type": output.get("ename", "Error"), "message": output.get("evalue", ""),
                    "cell": index + 1, "traceback": "\n".join(output.get("traceback", []))}
    return {"type": "Error", "message": "cell failed", "cell": index + 1, "traceback": ""}


def cancel(store: Store, run: Run, by: str, force: bool, reason: str | None, machine: str,
           wait: float) -> Run:
    """Cancel a waiting run; a processing one only with `force` (the caller checked the
    permission), ending its whole process tree: here if the run executes on this machine,
    else by its worker, asked through the store and waited for up to `wait` seconds."""
    why = f"cancelled by {by}" + (f": {reason}" if reason else "")
    if run.status is Status.WAITING:
        return lifecycle.change(store, run.id, [Status.WAITING], Change(Status.CANCELLED, by, why), "cancel")
    if run.status is not Status.PROCESSING:
        raise IllegalTransition(run.id, run.status.value, "cancel", f"it already {run.status.value}")
    if not force:
        raise IllegalTransition(run.id, "processing", "cancel",
                                "it is processing (an admin may end it with --force)")
    if not is_local(store, run, machine):
        return _cancel_elsewhere(store, run, by, f"force-{why}", wait)
    cancelled = lifecycle.change(store, run.id, [Status.PROCESSING], Change(Status.CANCELLED, by, f"force-{why}"),
                                 "force-cancel", attempt=run.attempt)
    end_run(run_token(run.run_dir, run.started_at), known_processes(run))
    return cancelled


def _cancel_elsewhere(store: Store, run: Run, by: str, why: str, wait: float) -> Run:
    """Ask the run's machine to end it and wait for its worker to confirm (it records the
    cancel once the tree is gone); past `wait`, cancel it here with that reason (its worker,
    if it ever comes back, finds the run no longer its own and ends the tree then)."""
    if not store.request_cancel(run.id, run.attempt, by, why):
        current = store.get(run.id)
        raise IllegalTransition(run.id, current.status.value, "cancel", f"it already {current.status.value}")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        current = store.get(run.id)
        if current.status is not Status.PROCESSING or current.attempt != run.attempt:
            if current.status is Status.CANCELLED:
                return current
            raise IllegalTransition(run.id, current.status.value, "cancel",
                                    f"it {current.status.value} before machine {run.machine} ended it")
        time.sleep(CANCEL_CHECK_S)
    unanswered = f"{why}; machine {run.machine} did not confirm within {wait:g} s"
    return lifecycle.change(store, run.id, [Status.PROCESSING], Change(Status.CANCELLED, by, unanswered),
                            "force-cancel", attempt=run.attempt)


def delete(store: Store, run: Run) -> Run:
    """Delete a waiting or finished run with its history and its run folder."""
    allowed = [Status.WAITING, *FINISHED]
    if run.status not in allowed:
        raise IllegalTransition(run.id, run.status.value, "delete", "it is processing")
    deleted = lifecycle.delete(store, run.id, allowed)
    remove_run_folder(store.runs_dir, deleted.id)
    return deleted


def remove_run_folder(runs_dir: Path, run_id: int) -> None:
    """Remove `<runs>/<id>/` and nothing outside it: links inside are removed, not followed."""
    folder = runs_dir / str(int(run_id))
    if folder.is_symlink():
        folder.unlink()
    elif folder.is_dir():
        shutil.rmtree(folder)  # rmtree never follows symlinks inside the tree


def purge(store: Store, cutoff: float, statuses: Sequence[Status] = tuple(FINISHED)) -> list[int]:
    """Delete runs in `statuses` (finished ones) that finished before `cutoff`, with their folders."""
    removed = []
    for run_id in store.finished_before(cutoff, statuses):
        try:
            lifecycle.delete(store, run_id, list(statuses), "purge")
        except IllegalTransition:
            continue  # retried meanwhile
        remove_run_folder(store.runs_dir, run_id)
        removed.append(run_id)
    return removed


def forget_gone_workers(store: Store) -> int:
    """Remove the rows of workers and drains gone (no heartbeat) for over GONE_WORKER_KEPT_S."""
    return store.forget_workers(store.now() - GONE_WORKER_KEPT_S)


def apply_retention(store: Store, retention: Mapping[str, float]) -> list[int]:
    """The automatic purge of `[retention]` in runtool.toml and of gone workers' rows (run by
    workers, at most hourly)."""
    forget_gone_workers(store)
    removed: list[int] = []
    now = store.now()
    for status, age in retention.items():
        removed += purge(store, now - age, [Status(status)])
    return removed
