"""What every store writes alike: the columns a status change sets, and those that record
an attempt's processes.

A store module: it holds SQL, shared by the SQLite store (queue.py) and the PostgreSQL store
(pg_tx.py), each writing placeholders in its driver's style.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .models import FINISHED, Change, Status, to_json


def change_assignments(change: Change, now: float, mark: Callable[[str], str]) -> tuple[list[str], dict[str, Any]]:
    """The SET clauses of `change` and their arguments, for every store (`mark` writes a
    placeholder in the store's style): what a change does to a run's columns, said once."""
    values: dict[str, Any] = {"status": change.to.value}
    if change.to in FINISHED:
        values["finished_at"] = now
    if change.to is Status.WAITING:
        values["not_before"] = change.not_before
    if change.error is not None:
        values["error"] = to_json(change.error)
    if change.metrics is not None:
        values["metrics"] = to_json(change.metrics)
    assignments = [f"{k} = {mark('set_' + k)}" for k in values]
    args = {f"set_{k}": v for k, v in values.items()}
    if change.attempt == "uncount":
        assignments.append("attempt = attempt - 1")
    elif change.attempt == "reset":
        assignments.append("attempt = 0, error = NULL, started_at = NULL, finished_at = NULL,"
                           f" progress_done = NULL, progress_total = NULL, ready = {mark('ready')}")
        args["ready"] = change.ready
    return assignments, args


def process_assignments(runner: tuple[int, float] | None, kernel: tuple[int, float] | None,
                        mark: Callable[[str], str]) -> tuple[list[str], dict[str, float]]:
    """The SET clauses noting the (pid, start time) of an attempt's runner and kernel, and
    their arguments (none when neither is given)."""
    assignments: list[str] = []
    args: dict[str, float] = {}
    for name, process in (("runner", runner), ("kernel", kernel)):
        if process:
            assignments.append(f"{name}_pid = {mark(name + '_pid')}, {name}_ctime = {mark(name + '_ctime')}")
            args.update({f"{name}_pid": process[0], f"{name}_ctime": process[1]})
    return assignments, args
