"""Recording how an attempt ended: succeeded, retried later, or failed for good.

Shared by the worker (which knows the outcome from the runner) and by reconcile
(which infers it from the output notebook after a worker died).
"""

from __future__ import annotations

import shutil
from collections.abc import Collection
from pathlib import Path

from . import lifecycle
from .config import ERROR_FILE
from .errors import IllegalTransition
from .faults import crash_point
from .metrics import read_metrics
from .models import Change, ErrorRecord, Run, Status
from .queue import Store


def succeed(store: Store, run: Run, by: str, reason: str) -> Run | None:
    """Record the attempt's success; None if the run was cancelled or repaired meanwhile."""
    # Files before the commit: a worker killed right after it leaves nothing undone.
    copy_output(run)
    try:
        finished = Change(Status.SUCCEEDED, by, reason, metrics=read_metrics(run.run_dir))
        done = lifecycle.change(store, run.id, [Status.PROCESSING], finished, "record success",
                                attempt=run.attempt)
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
    write_error_file(Path(run.run_dir), error)
    if not retrying:
        copy_output(run)
    if retrying:
        delay = lifecycle.retry_delay(retry_base_delay, run.attempt)
        again = f"{reason}; retry {run.attempt} of {run.max_attempts - 1} in {delay:g} s"
        change = Change(Status.WAITING, by, again, error=error, not_before=store.now() + delay)
    else:
        change = Change(Status.FAILED, by, reason, error=error, metrics=read_metrics(run.run_dir))
    try:
        result = lifecycle.change(store, run.id, [Status.PROCESSING], change, "record failure",
                                  attempt=run.attempt)
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
