"""Recording how an attempt ended: succeeded, retried later, or failed for good.

Shared by the worker (which knows the outcome from the runner) and by reconcile
(which infers it from the output notebook after a worker died).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Collection
from pathlib import Path

from . import attempts, lifecycle
from .config import ERROR_FILE
from .errors import IllegalTransition
from .faults import crash_point
from .metrics import read_metrics
from .models import Change, ErrorRecord, Run, Status
from .queue import Store


def owner(store: Store, run: Run, copy: bool = False) -> Callable[[Run], None]:
    """What recording an attempt does inside its transaction: refuse unless the run is still
    that attempt; on a shared store, put the attempt's private files in place (and give
    OUTPUT its copy)."""
    def then(changed: Run) -> None:
        attempts.owned_by(run, changed)
        if store.shared:
            attempts.publish(run)
            if copy:
                copy_output(run)
    return then


def _written(store: Store, run: Run) -> str:
    """Where the attempt's files are now: its private folder on a shared store (the run
    folder once put in place, or for an attempt that never had one)."""
    files = attempts.files_dir(run, store.shared)
    return str(files if files.is_dir() else Path(run.run_dir))


def succeed(store: Store, run: Run, by: str, reason: str) -> Run | None:
    """Record the attempt's success; None if the run was cancelled or repaired meanwhile."""
    # Files before the commit: a worker killed right after it leaves nothing undone. On a
    # shared store they are private until the recording transaction puts them in place.
    if not store.shared:
        copy_output(run)
    try:
        finished = Change(Status.SUCCEEDED, by, reason, metrics=read_metrics(_written(store, run)))
        done = lifecycle.change(store, run.id, [Status.PROCESSING], finished, "record success",
                                attempt=run.attempt, then=owner(store, run, copy=True))
    except IllegalTransition:
        return None  # cancelled (or repaired) while it ran: that decision stands
    crash_point("recorded")
    return done


def fail_attempt(store: Store, run: Run, error: ErrorRecord, by: str, reason: str,
                 retry_base_delay: float, retry: bool = True, no_retry: Collection[str] = ()) -> Run | None:
    """Failed for good, or back to waiting after the backoff if attempts are left and the
    error's type is not in `no_retry`; None if the run was cancelled or repaired meanwhile."""
    retrying = retry and run.attempt < run.max_attempts
    if retrying and error.get("type") in no_retry:
        retrying = False
        reason = f"{reason}; not retried: {error['type']} is in no_retry"
    # Files before the commit: a worker killed right after it leaves nothing undone.
    write_error_file(attempts.files_dir(run, store.shared), error)
    if not retrying and not store.shared:
        copy_output(run)
    if retrying:
        delay = lifecycle.retry_delay(retry_base_delay, run.attempt)
        again = f"{reason}; retry {run.attempt} of {run.max_attempts - 1} in {delay:g} s"
        change = Change(Status.WAITING, by, again, error=error, not_before=store.now() + delay)
    else:
        change = Change(Status.FAILED, by, reason, error=error, metrics=read_metrics(_written(store, run)))
    try:
        result = lifecycle.change(store, run.id, [Status.PROCESSING], change, "record failure",
                                  attempt=run.attempt, then=owner(store, run, copy=not retrying))
    except IllegalTransition:
        return None  # cancelled (or repaired) while it ran: that decision stands
    crash_point("recorded")
    return result


def write_error_file(run_dir: Path, error: ErrorRecord) -> None:
    cell = f"cell {error['cell']}" if error.get("cell") else "no cell"
    text = (f"{error.get('type')}: {error.get('message')}\n({cell})\n\n"
            f"{error.get('traceback') or ''}\n")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / ERROR_FILE).write_text(text, encoding="utf-8")
    except OSError:
        pass  # a full or read-only disk: the record keeps the error all the same


def copy_output(run: Run) -> None:
    """Give the submitter's OUTPUT path a copy of the output notebook, as papermill would."""
    source = Path(run.output_path)
    if run.output_copy and source.is_file():
        try:
            shutil.copyfile(source, run.output_copy)
        except OSError:
            pass  # the run's own output.ipynb stays; the copy is a convenience
