"""Statuses, their allowed changes, and the records the stores read and write."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, TypedDict

from .config import ATTEMPT_PREFIX, OUTPUT_FILE
from .durations import iso


class Status(str, Enum):
    WAITING = "waiting"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


#: Every allowed status change; anything else raises IllegalTransition.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.WAITING: frozenset({Status.PROCESSING, Status.CANCELLED}),
    Status.PROCESSING: frozenset({Status.SUCCEEDED, Status.WAITING, Status.FAILED, Status.CANCELLED}),
    Status.SUCCEEDED: frozenset(),
    Status.FAILED: frozenset({Status.WAITING}),
    Status.CANCELLED: frozenset({Status.WAITING}),
}
FINISHED = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
#: Labels of waiting runs (Run.label), each counted apart by `counts()`.
WAITING_LABELS = ("waiting", "scheduled", "awaiting", "retrying")
#: Every label people see, in the order the dashboard and `counts()` show them.
LABELS = (*WAITING_LABELS, "processing", "succeeded", "failed", "cancelled")
#: When a continuation runs: its parents succeeded, failed, or finished either way.
On = Literal["success", "failure", "finish"]
ON_VALUES: tuple[On, ...] = ("success", "failure", "finish")


class ErrorRecord(TypedDict):
    """Why an attempt failed: the record's `error` and the history row's."""

    type: str
    message: str
    cell: int | None
    traceback: str


class HistoryEntry(TypedDict):
    status: str
    at: str
    by: str
    reason: str
    error: ErrorRecord | None


@dataclass(frozen=True)
class NewRun:
    """A validated submission, as the stores insert it."""

    notebook: str
    kind: str
    queue: str
    priority: int
    parameters: dict[str, Any]
    tags: dict[str, str]
    max_attempts: int
    timeout_s: float | None = None
    kernel: str | None = None
    output_copy: str | None = None
    not_before: float | None = None
    after: tuple[int, ...] = ()
    after_on: On | None = None


#: What a status change does to the attempt counter: leave it, take the attempt back
#: (a worker stopped it), or start over (a retry by a user).
AttemptChange = Literal["keep", "uncount", "reset"]


@dataclass(frozen=True)
class Change:
    """One status change, as a store applies it with its history row.

    A change to a finished status also stamps `finished_at`; back to waiting sets
    `not_before`; `attempt="reset"` also clears the last attempt's times, progress and error.
    """

    to: Status
    by: str
    reason: str
    error: ErrorRecord | None = None
    not_before: float | None = None
    attempt: AttemptChange = "keep"
    ready: bool = True
    metrics: dict[str, float] | None = None


@dataclass(frozen=True)
class Claimant:
    """The worker claiming a run: its name, process (pid and start time) and machine."""

    name: str
    pid: int
    ctime: float
    machine: str


@dataclass(frozen=True)
class Beat:
    """What a heartbeat learnt about the attempt it renewed."""

    own: bool
    """The run is still processing this attempt for this worker (False: reconciled away)."""
    cancel: tuple[str, str] | None = None
    """(who, reason) of a force-cancel asked from another machine, if any."""


@dataclass
class WorkerInfo:
    """One worker or drain as the fleet view shows it (`runtool workers`)."""

    name: str
    machine: str
    pid: int
    queues: list[str]
    started_at: float
    heartbeat_at: float
    run_id: int | None = None
    kind: str = "worker"
    """"worker" or "drain"."""

    def to_dict(self, gone: bool) -> dict[str, Any]:
        return {"name": self.name, "machine": self.machine, "pid": self.pid, "kind": self.kind,
                "queues": self.queues, "run_id": self.run_id, "started_at": iso(self.started_at),
                "heartbeat_at": iso(self.heartbeat_at), "gone": gone}


@dataclass(frozen=True)
class RunFilter:
    """Which runs `list` and `count` select; empty fields select all."""

    statuses: tuple[Status, ...] = ()
    queue: str | None = None
    kind: str | None = None
    text: str | None = None
    exclude: int | None = None
    """A run id left out (the search's own hit, already shown first)."""
    sort_metric: str | None = None
    """Order `list` by this metric (runs without a number for it last, then newest first)
    instead of newest first; `count` ignores it."""
    descending: bool = True
    """With `sort_metric`: highest first (else lowest first)."""


@dataclass
class Run:
    id: int
    notebook: str
    kind: str
    queue: str
    priority: int
    status: Status
    parameters: dict[str, Any]
    tags: dict[str, str]
    attempt: int
    max_attempts: int
    timeout_s: float | None
    kernel: str | None
    output_copy: str | None
    created_at: float
    not_before: float | None
    started_at: float | None
    finished_at: float | None
    heartbeat_at: float | None
    after: list[int]
    after_on: str | None
    ready: bool
    submitted_by: str
    worker: str | None
    worker_pid: int | None
    worker_ctime: float | None
    runner_pid: int | None
    runner_ctime: float | None
    kernel_pid: int | None
    kernel_ctime: float | None
    progress_done: int | None
    progress_total: int | None
    error: ErrorRecord | None
    machine: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    run_dir: str = ""
    history: list[HistoryEntry] = field(default_factory=list)
    cancel_requested: tuple[str, str] | None = None
    """(who, reason) of a force-cancel waiting for the owning machine (PostgreSQL store)."""

    def label(self, now: float) -> str:
        """The status as people see it: waiting runs read scheduled, awaiting or retrying."""
        if self.status is not Status.WAITING:
            return self.status.value
        if not self.ready:
            return "awaiting"
        if self.attempt > 0:
            return "retrying"
        if self.not_before is not None and self.not_before > now:
            return "scheduled"
        return "waiting"

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish of the last attempt; None while unfinished."""
        if self.started_at is None or self.finished_at is None:
            return None
        return max(0.0, self.finished_at - self.started_at)

    @property
    def output_path(self) -> str:
        return f"{self.run_dir}/{OUTPUT_FILE}"

    @property
    def attempt_dir(self) -> str:
        """The current attempt's private folder (shared stores): its files move into the run
        folder only when its owner records it, so a late attempt never changes the run folder."""
        stamp = round((self.started_at or 0.0) * 1000)
        return f"{self.run_dir}/{ATTEMPT_PREFIX}{self.attempt}-{stamp}"

    def to_dict(self, with_history: bool = False) -> dict[str, Any]:
        """The record as `--json` and the Python API show it."""
        progress = None
        if self.progress_total is not None:
            progress = {"done": self.progress_done or 0, "total": self.progress_total}
        record = {
            "id": self.id, "notebook": self.notebook, "kind": self.kind, "queue": self.queue,
            "priority": self.priority, "status": self.status.value,
            "parameters": self.parameters, "tags": self.tags,
            "attempt": self.attempt, "max_attempts": self.max_attempts, "timeout_s": self.timeout_s,
            "kernel": self.kernel,
            "created_at": iso(self.created_at), "not_before": iso(self.not_before),
            "started_at": iso(self.started_at), "finished_at": iso(self.finished_at),
            "heartbeat_at": iso(self.heartbeat_at),
            "after": self.after, "after_on": self.after_on,
            "submitted_by": self.submitted_by, "worker": self.worker, "machine": self.machine,
            "metrics": self.metrics, "progress": progress,
            "run_dir": self.run_dir, "output_path": self.output_path, "error": self.error,
        }
        if with_history:
            record["history"] = self.history
        return record


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False)
