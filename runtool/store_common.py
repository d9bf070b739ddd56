"""What every store does alike: the columns a status change sets, those that record an
attempt's processes, and how a row of `runs` becomes a `Run`.

A store module: it holds SQL, shared by the SQLite store (queue.py) and the PostgreSQL store
(pg_tx.py), each writing placeholders in its driver's style.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .models import FINISHED, Change, Run, Status, to_json


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


def run_from_row(row: Any, run_dir: str, after: list[int], cancel_requested: tuple[str, str] | None = None) -> Run:
    """The `Run` of a row of `runs` (a sqlite3.Row or a psycopg dict row): the columns both
    stores keep alike; `after` and `cancel_requested` are what each keeps its own way.
    `run_dir` is a string, not built with pathlib: this runs for every row read."""
    return Run(
        id=row["id"], notebook=row["notebook"], kind=row["kind"], queue=row["queue"],
        priority=row["priority"], status=Status(row["status"]),
        parameters=json.loads(row["parameters"]), tags=json.loads(row["tags"]),
        attempt=row["attempt"], max_attempts=row["max_attempts"], timeout_s=row["timeout_s"],
        kernel=row["kernel"], output_copy=row["output_copy"], created_at=row["created_at"],
        not_before=row["not_before"], started_at=row["started_at"],
        finished_at=row["finished_at"], heartbeat_at=row["heartbeat_at"],
        after=after, after_on=row["after_on"], ready=bool(row["ready"]),
        submitted_by=row["submitted_by"], worker=row["worker"], worker_pid=row["worker_pid"],
        worker_ctime=row["worker_ctime"], runner_pid=row["runner_pid"],
        runner_ctime=row["runner_ctime"], kernel_pid=row["kernel_pid"],
        kernel_ctime=row["kernel_ctime"], progress_done=row["progress_done"],
        progress_total=row["progress_total"],
        error=json.loads(row["error"]) if row["error"] else None,
        machine=row["machine"], metrics=json.loads(row["metrics"]),
        cancel_requested=cancel_requested, run_dir=run_dir,
    )
