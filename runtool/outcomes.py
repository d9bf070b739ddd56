"""Recording how an attempt ended: succeeded, retried later, or failed for good.

Shared by the worker (which knows the outcome from the runner) and by reconcile
(which infers it from the output notebook after a worker died).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .durations import MAX_DURATION_S
from .errors import IllegalTransition
from .faults import crash_point
from .models import Run, Status

if TYPE_CHECKING:
    from .api import RunQueue


def succeed(q: RunQueue, run: Run, by: str, reason: str) -> Run | None:
    # Files before the commit: a worker killed right after it leaves nothing undone.
    copy_output(run)
    try:
        done = q.store.transition(run.id, [Status.PROCESSING], Status.SUCCEEDED, by, reason,
                                  "record success", attempt=run.attempt)
    except IllegalTransition:
        return None  # cancelled (or repaired) while it ran: that decision stands
    crash_point("recorded")
    return done


def fail_attempt(q: RunQueue, run: Run, error: dict[str, Any], by: str, reason: str,
                 retry: bool = True) -> Run | None:
    """Failed for good, or back to waiting after the backoff if attempts are left."""
    retrying = retry and run.attempt < run.max_attempts
    # Files before the commit: a worker killed right after it leaves nothing undone.
    write_error_file(Path(run.run_dir), error)
    if not retrying:
        copy_output(run)
    try:
        if retrying:
            # capped: doubling 100 years of base delay would reach years no one can show
            delay = min(q.settings.retry_base_delay * 2 ** (run.attempt - 1), MAX_DURATION_S)
            again = f"{reason}; retry {run.attempt} of {run.max_attempts - 1} in {delay:g} s"
            result = q.store.transition(run.id, [Status.PROCESSING], Status.WAITING, by, again,
                                        "record failure", error=error,
                                        sets={"not_before": time.time() + delay}, attempt=run.attempt)
        else:
            result = q.store.transition(run.id, [Status.PROCESSING], Status.FAILED, by, reason,
                                        "record failure", error=error, attempt=run.attempt)
    except IllegalTransition:
        return None  # cancelled (or repaired) while it ran: that decision stands
    crash_point("recorded")
    return result


def write_error_file(run_dir: Path, error: dict[str, Any]) -> None:
    cell = f"cell {error['cell']}" if error.get("cell") else "no cell"
    text = (f"{error.get('type')}: {error.get('message')}\n({cell})\n\n"
            f"{error.get('traceback') or ''}\n")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "error.txt").write_text(text, encoding="utf-8")
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
