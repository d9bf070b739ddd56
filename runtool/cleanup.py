"""Repairing stale runs, cancelling, deleting and purging: the actions that end runs early.

`reconcile` is the one place that repairs runs left `processing` by a dead worker; it
writes down why it moved each run, and costs one indexed query when nothing is stale.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import outcomes
from .errors import IllegalTransition
from .models import FINISHED, Run, Status
from .processes import alive, end_run, run_token

if TYPE_CHECKING:
    from .api import RunQueue


def known_processes(run: Run) -> list[tuple[int | None, float | None]]:
    return [(run.runner_pid, run.runner_ctime), (run.kernel_pid, run.kernel_ctime)]


def is_stale(q: RunQueue, run: Run) -> bool:
    """Processing, but nothing executes it: its worker is gone, or the executor lock is free."""
    if run.status is not Status.PROCESSING:
        return False
    if not alive(run.worker_pid, run.worker_ctime):
        return True
    return q.lock.is_free()


def reconcile(q: RunQueue) -> list[str]:
    """Repair every stale run; one line per change. Idempotent."""
    changes = []
    for run in q.store.processing():
        if not is_stale(q, run):
            continue
        ended = end_run(run_token(run.run_dir, run.started_at), known_processes(run))
        verdict, error = _evidence(Path(run.output_path), run.started_at)
        gone = f"worker {run.worker} gone" if not alive(run.worker_pid, run.worker_ctime) else "executor lock free"
        leftovers = f"; ended {ended} leftover process(es)" if ended else ""
        if verdict == "succeeded":
            reason = f"reconciled: {gone}; output notebook finished without exception{leftovers}"
            result = outcomes.succeed(q, run, "reconcile", reason)
        elif verdict == "failed":
            assert error is not None
            reason = f"reconciled: {gone}; output notebook ended with {error['type']}{leftovers}"
            result = outcomes.fail_attempt(q, run, error, "reconcile", reason, retry=False)
        else:
            assert error is not None
            reason = f"reconciled: {gone}; {error['message']}{leftovers}"
            result = outcomes.fail_attempt(q, run, error, "reconcile", reason)
        if result is not None:
            changes.append(f"run {run.id}: processing -> {result.status.value} ({reason})")
    return changes


def _evidence(output: Path, since: float | None = None) -> tuple[str, dict[str, Any] | None]:
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


def _died(message: str, cell: int | None) -> dict[str, Any]:
    return {"type": "WorkerDied", "message": message, "cell": cell, "traceback": ""}


def _cell_error(cell: dict[str, Any], index: int) -> dict[str, Any]:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return {"type": output.get("ename", "Error"), "message": output.get("evalue", ""),
                    "cell": index + 1, "traceback": "\n".join(output.get("traceback", []))}
    return {"type": "Error", "message": "cell failed", "cell": index + 1, "traceback": ""}


def cancel(q: RunQueue, run_id: int, force: bool, reason: str | None) -> Run:
    run = q.store.get(run_id)
    q.require("cancel")
    why = f"cancelled by {q.user}" + (f": {reason}" if reason else "")
    if run.status is Status.WAITING:
        return q.store.transition(run.id, [Status.WAITING], Status.CANCELLED, q.user, why, "cancel")
    if run.status is not Status.PROCESSING:
        raise IllegalTransition(run.id, run.status.value, "cancel", f"it already {run.status.value}")
    if not force:
        raise IllegalTransition(run.id, "processing", "cancel",
                                "it is processing (an admin may end it with --force)")
    q.require("force-cancel")
    cancelled = q.store.transition(run.id, [Status.PROCESSING], Status.CANCELLED, q.user,
                                   f"force-{why}", "force-cancel", attempt=run.attempt)
    end_run(run_token(run.run_dir, run.started_at), known_processes(run))
    return cancelled


def delete(q: RunQueue, run_id: int) -> Run:
    run = q.store.get(run_id)
    q.require("delete", run.kind)
    allowed = [Status.WAITING, *FINISHED]
    if run.status not in allowed:
        raise IllegalTransition(run.id, run.status.value, "delete", "it is processing")
    deleted = q.store.delete(run.id, allowed)
    remove_run_folder(q.runs_dir, deleted.id)
    return deleted


def remove_run_folder(runs_dir: Path, run_id: int) -> None:
    """Remove `<runs>/<id>/` and nothing outside it: links inside are removed, not followed."""
    folder = runs_dir / str(int(run_id))
    if folder.is_symlink():
        folder.unlink()
    elif folder.is_dir():
        shutil.rmtree(folder)  # rmtree never follows symlinks inside the tree


def purge(q: RunQueue, older_than_s: float, statuses: Sequence[Status] | None = None) -> list[int]:
    """Delete finished runs (and folders) that finished more than `older_than_s` ago."""
    q.require("purge")
    return _purge(q, time.time() - older_than_s, statuses or tuple(FINISHED))


def _purge(q: RunQueue, cutoff: float, statuses: Sequence[Status]) -> list[int]:
    removed = []
    for run_id in q.store.finished_before(cutoff, statuses):
        try:
            q.store.delete(run_id, list(statuses), "purge")
        except IllegalTransition:
            continue  # retried meanwhile
        remove_run_folder(q.runs_dir, run_id)
        removed.append(run_id)
    return removed


def apply_retention(q: RunQueue) -> list[int]:
    """The automatic purge of `[retention]` in runtool.toml (run by workers, at most hourly)."""
    removed: list[int] = []
    now = time.time()
    for status, age in q.settings.retention.items():
        removed += _purge(q, now - age, [Status(status)])
    return removed
