"""`RunQueue`: the Python API that the command line and the dashboard are thin layers over."""

from __future__ import annotations

import builtins
import dataclasses
import inspect
import itertools
import math
import operator
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import psutil

from . import cleanup, lifecycle, permissions
from .config import (LOG_FILES, RUNS_DIR, check_queue_name, current_machine, current_user, load_settings, lock_path,
                     resolve_home)
from .durations import check_time, parse_duration
from .errors import InvalidInput, Refused
from .lock import ExecutorLock
from .metrics import MAX_NAME
from .models import FINISHED, ON_VALUES, NewRun, On, Run, RunFilter, Status, WorkerInfo
from .params import NotebookInfo, check_parameters, read_notebook
from .queue import open_store

if TYPE_CHECKING:
    from .pg_store import PostgresStore

PRIORITIES = {"high": 10, "normal": 0, "low": -10}
_KIND = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_TAG_BYTES = 10_000
MAX_SWEEP = 1000
"""Most runs one sweep (`--grid`) may submit."""
MAX_INTEGER = 2**63 - 1
"""SQLite's largest integer: the bound of run ids, --limit and --offset."""


@dataclasses.dataclass(frozen=True)
class SubmitOptions:
    """The options of a submission: the keyword arguments of `RunQueue.submit` and `sweep`
    (DESIGN.md section 8), said once; each is checked by `RunQueue.submit`."""

    queue: str = "default"
    priority: int | str = 0
    """high, normal, low or a number (high=10, normal=0, low=-10)."""
    delay: float | str | None = None
    """Start no earlier than this from now (seconds or a duration such as "5m")."""
    at: float | None = None
    """Start no earlier than this time (epoch seconds); not with `delay`."""
    after: int | Sequence[int] | None = None
    """The parent run ids to wait for."""
    on: str = "success"
    """When a continuation runs: success, failure or finish (of each parent)."""
    retries: int | None = None
    """Retries after a failure; None: runtool.toml's `retries`."""
    timeout: float | str | None = None
    """Longest a whole run may take; None: runtool.toml's `timeout`."""
    kind: str | None = None
    """None: the notebook's file stem."""
    tags: dict[str, str] | None = None
    kernel: str | None = None
    """None: the notebook's own kernelspec."""
    output: str | Path | None = None
    """Where a copy of the output notebook goes when the run finishes."""


def _options_signature(method: Any) -> Any:
    """Give `method` (which takes `**options`) a signature naming `SubmitOptions`' fields as its
    keyword arguments: help(), Jupyter's tooltips and its keyword completion read it."""
    signature = inspect.signature(method)
    params = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    params += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
               for f in dataclasses.fields(SubmitOptions)]
    method.__signature__ = signature.replace(parameters=params)
    return method


class RunQueue:
    """One home's queue of runs, acting as one user (whose role decides what is allowed)."""

    def __init__(self, home: str | Path | None = None, user: str | None = None) -> None:
        self.home = resolve_home(home)
        self.settings = load_settings(self.home)
        self.runs_dir = self.home / RUNS_DIR
        self.store = open_store(self.home, self.settings)
        self.machine = current_machine()
        self.lock = ExecutorLock(lock_path(self.home, self.store.shared, self.machine))
        if self.settings.store.identity == "database":
            # the server authenticated this role: $RUNTOOL_USER and `user` cannot stand in for it
            database = self._database()
            self.user = database.session_user()
            users = self.settings.users
            self.role = database.database_role() or (
                permissions.role_of(self.user, users, self.home) if users else "viewer")
        else:
            self.user = user or current_user()
            self.role = permissions.role_of(self.user, self.settings.users, self.home)
        self.permissions = permissions.permissions_of(self.role, self.settings.roles)

    def close(self) -> None:
        self.store.close()

    def _database(self) -> PostgresStore:
        from .pg_store import PostgresStore

        if not isinstance(self.store, PostgresStore):
            raise Refused('needs a PostgreSQL store ([store] url in runtool.toml or $RUNTOOL_DATABASE_URL)')
        return self.store

    def __enter__(self) -> RunQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- permissions: every check of every interface happens in this class -------

    def can(self, permission: str, kind: str | None = None) -> bool:
        return permissions.allowed(self.permissions, permission, kind)

    def require(self, permission: str, kind: str | None = None) -> None:
        permissions.require(self.user, self.role, self.permissions, permission, kind)

    # -- submitting ---------------------------------------------------------------

    def inspect(self, notebook: str | Path) -> NotebookInfo:
        """The notebook's kernel and declared parameters (for forms and validation)."""
        return read_notebook(notebook)

    @_options_signature
    def submit(self, notebook: str | Path, parameters: dict[str, Any] | None = None, **options: Any) -> Run:
        """Validate and store a waiting run; InvalidInput (nothing stored) names the bad input.

        `options` are the fields of `SubmitOptions` (queue, priority, delay, at, after, on, retries,
        timeout, kind, tags, kernel, output); an unknown one is a TypeError.
        """
        new = self._new_run(notebook, parameters, SubmitOptions(**options))
        return lifecycle.submit(self.store, new, by=self.user)

    @_options_signature
    def sweep(
        self,
        notebook: str | Path,
        grid: Mapping[str, Sequence[Any]],
        parameters: dict[str, Any] | None = None,
        **options: Any,
    ) -> builtins.list[Run]:
        """Submit one run per combination of the `grid` values ({"C": [1, 10], "seed": [0, 1]}:
        four runs), each checked like `parameters`, all tagged `sweep=<id of the first>`.

        `options` are those of `submit`; nothing is stored unless every run is valid.
        """
        if not isinstance(grid, Mapping) or not grid:
            raise InvalidInput("bad --grid: expected NAME=V1,V2,... (a mapping of names to lists of values)")
        if options.get("output") is not None:
            raise InvalidInput("OUTPUT cannot be given with --grid: each run keeps its own output.ipynb")
        axes = []
        for name, values in grid.items():
            if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence) or not values:
                raise InvalidInput(f"bad --grid {str(name)[:40]}: expected a non-empty list of values")
            if parameters and name in parameters:
                raise InvalidInput(f"parameter {str(name)[:40]!r} given both as a parameter and in --grid")
            axes.append([(name, value) for value in values])
        size = math.prod(len(axis) for axis in axes)
        if size > MAX_SWEEP:
            raise InvalidInput(f"bad --grid: {size} combinations, more than {MAX_SWEEP}")
        given = SubmitOptions(**options)
        news = [self._new_run(notebook, {**(parameters or {}), **dict(combo)}, given)
                for combo in itertools.product(*axes)]
        return lifecycle.submit_sweep(self.store, news, by=self.user)

    def _new_run(self, notebook: str | Path, parameters: dict[str, Any] | None, o: SubmitOptions) -> NewRun:
        self.require("submit")
        check_queue_name(o.queue)
        prio = _priority(o.priority)
        if o.on not in ON_VALUES:
            raise InvalidInput(f"bad --on {o.on!r}: expected success, failure or finish")
        parents = _parents(o.after)
        retries = self.settings.retries if o.retries is None else o.retries
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 100:
            raise InvalidInput(f"bad --retries {retries!r}: expected a whole number from 0 to 100")
        timeout_s = parse_duration(o.timeout, "timeout") if o.timeout is not None else self.settings.timeout
        not_before = None
        if o.delay is not None and o.at is not None:
            raise InvalidInput("give either a delay (--in) or a time (--at), not both")
        if o.delay is not None:
            not_before = self.store.now() + parse_duration(o.delay, "delay")
        elif o.at is not None:
            not_before = check_time(o.at, "--at")
        info = read_notebook(notebook)
        if o.kernel is not None and not isinstance(o.kernel, str):
            raise InvalidInput(f"bad kernel {str(o.kernel)[:40]!r}: expected a kernel name")
        kernel_name = o.kernel or info.kernel
        if not kernel_name:
            raise InvalidInput(f"notebook {notebook}: names no kernel; pass --kernel NAME")
        _check_kernel(kernel_name)
        checked = check_parameters(info, parameters or {})
        kind = o.kind if o.kind is not None else info.path.stem
        if not isinstance(kind, str) or not _KIND.fullmatch(kind):
            raise InvalidInput(f"bad kind {kind!r}: expected 1-64 of A-Z a-z 0-9 _ . -")
        tags = _tags(o.tags or {})
        output_copy = _output_path(o.output) if o.output is not None else None
        return NewRun(
            notebook=str(info.path), kind=kind, queue=o.queue, priority=prio, parameters=checked,
            tags=tags, max_attempts=retries + 1, timeout_s=timeout_s or None, kernel=kernel_name,
            output_copy=output_copy, not_before=not_before, after=parents,
            after_on=cast(On, o.on) if parents else None,
        )

    # -- reading ------------------------------------------------------------------

    def get(self, run_id: int | str, history: bool = False) -> Run:
        run = self.store.get(_run_id(run_id))
        if history:
            run.history = self.store.history(run.id)
        return run

    def list(
        self,
        status: Sequence[str] | str | None = None,
        queue: str | None = None,
        kind: str | None = None,
        text: str | None = None,
        limit: int = 50,
        offset: int = 0,
        sort_metric: str | None = None,
        descending: bool = True,
    ) -> builtins.list[Run]:
        """Matching runs, newest first; with `sort_metric`, by that metric (highest first
        when `descending`), runs without it last. A sort needs a kind (metrics are compared
        within one kind, and the index that serves the sort is per kind)."""
        if sort_metric is not None:
            _metric_name(sort_metric, kind)
        where = RunFilter(_statuses(status), queue, kind, text, sort_metric=sort_metric, descending=descending)
        return self.store.list(where, _count(limit, "--limit"), _count(offset, "--offset"))

    def count(self, status: Sequence[str] | str | None = None, queue: str | None = None,
              kind: str | None = None, text: str | None = None, cap: int | None = None) -> int:
        """How many runs match; with `cap`, counting stops past it (returns at most cap + 1)."""
        return self.store.count(RunFilter(_statuses(status), queue, kind, text), cap)

    def counts(self) -> dict[str, int]:
        """Runs per label: waiting (due now; paused queues included), scheduled, awaiting,
        retrying, and one count per other status."""
        return self.store.counts(self.store.now())

    def kinds_and_queues(self) -> tuple[builtins.list[str], builtins.list[str]]:
        """Every kind and every queue that has runs, sorted (for filters and forms)."""
        return self.store.kinds_and_queues()

    def paused(self) -> dict[str, str]:
        return self.store.paused()

    def log_paths(self, run_id: int | str) -> builtins.list[Path]:
        run_dir = self.runs_dir / str(self.get(run_id).id)
        return [run_dir / name for name in LOG_FILES]

    # -- changing -----------------------------------------------------------------

    def cancel(self, run_id: int | str, force: bool = False, reason: str | None = None) -> Run:
        run = self.get(run_id)
        self.require("cancel")
        if force and run.status is Status.PROCESSING:
            self.require("force-cancel")
        return cleanup.cancel(self.store, run, self.user, force, reason, self.machine,
                              wait=self.settings.stale_after)

    def executes_elsewhere(self, run: Run) -> bool:
        """Whether a processing run executes on another machine: a force cancel of it waits
        (up to `stale_after`) for that machine's worker to end it."""
        return run.status is Status.PROCESSING and not cleanup.is_local(self.store, run, self.machine)

    def delete(self, run_id: int | str) -> Run:
        run = self.get(run_id)
        self.require("delete", run.kind)
        return cleanup.delete(self.store, run)

    def retry(self, run_id: int | str) -> Run:
        run = self.get(run_id)
        self.require("retry")
        return lifecycle.retry(self.store, run.id, self.user)

    def reconcile(self) -> builtins.list[str]:
        """Repair runs left processing by a dead worker; one line per change."""
        return cleanup.reconcile(self.store, self.lock, self.settings.retry_base_delay, self.machine,
                                 self.settings.stale_after)

    def store_now(self) -> float:
        """The store's clock (the database server's with PostgreSQL)."""
        return self.store.now()

    def workers(self) -> builtins.list[tuple[WorkerInfo, bool]]:
        """Every worker and drain the store knows, each with whether it is gone (no heartbeat
        for `stale_after`, or, on this machine, its process ended)."""
        now = self.store.now()
        fleet = []
        for info in self.store.workers():
            gone = now - info.heartbeat_at > self.settings.stale_after or (
                info.machine == self.machine and not psutil.pid_exists(info.pid))
            fleet.append((info, gone))
        return fleet

    def purge(self, older_than: float | str, statuses: Sequence[Status] | None = None) -> builtins.list[int]:
        """Delete finished runs (and their folders) that finished more than `older_than` ago,
        and the rows of workers gone for over a day (config.GONE_WORKER_KEPT_S)."""
        self.require("purge")
        cutoff = self.store.now() - parse_duration(older_than, "--older-than")
        cleanup.forget_gone_workers(self.store)
        return cleanup.purge(self.store, cutoff, tuple(statuses or FINISHED))

    def pause(self, queue: str | None = None) -> None:
        self.require("pause")
        # None means every queue; "" (an unset shell variable, say) is a bad name, not "all"
        self.store.pause(check_queue_name(queue) if queue is not None else "*", self.user)

    def resume(self, queue: str | None = None) -> None:
        self.require("pause")
        self.store.resume(check_queue_name(queue) if queue is not None else None)

    def migrate_store(self, url: str) -> tuple[int, int, str]:
        """Copy every run, its history, its parents and the paused queues of this home's
        SQLite store into the empty PostgreSQL database at `url` (ids kept); returns the
        numbers of runs and history rows moved, and the database as messages name it.
        Refused while a run is processing."""
        from .pg_store import PostgresStore
        from .queue import SQLiteStore

        self.require("migrate")
        if not isinstance(self.store, SQLiteStore):
            raise Refused("migrate-store: this home's store is not SQLite (unset $RUNTOOL_DATABASE_URL"
                          " and [store] url to move its runtool.db)")
        processing = self.store.processing()
        if processing:
            raise Refused(f"migrate-store: run {processing[0].id} is processing; stop the workers first")
        dump = self.store.dump()
        target = PostgresStore(url, self.runs_dir)
        try:
            target.load(dump)
        finally:
            target.close()
        return len(dump["runs"]), len(dump["history"]), target.where

    def grant(self, user: str, role: str) -> None:
        """Give the database role `user` the database rights of runtool role `role`
        (PostgreSQL with identity = "database"; admins only)."""
        self.require("grant")
        if self.settings.store.identity != "database":
            raise Refused('grant: needs identity = "database" under [store] in runtool.toml')
        if role not in permissions.BUILTIN_ROLES:
            raise InvalidInput(f"bad role {role!r}: expected viewer, operator or admin")
        if not isinstance(user, str) or not user or len(user) > 63:
            raise InvalidInput(f"bad database role {str(user)[:70]!r}: expected 1-63 characters")
        self._database().grant(user, role)


def _run_id(value: Any) -> int:
    """A run id: a whole number, or its decimal digits as text (not 1.5, "1e3", "٣" or True)."""
    number = _whole(value)
    if number is None or not 1 <= number <= MAX_INTEGER:
        raise InvalidInput(f"bad run id {str(value)[:40]!r}: expected a positive whole number")
    return number


def _parents(after: int | Sequence[int] | None) -> tuple[int, ...]:
    """The run ids a continuation waits for (`--after`, repeatable), in order, once each."""
    if after is None:
        return ()
    values = [after] if isinstance(after, (int, str)) else list(after)
    parents: builtins.list[int] = []
    for value in values:
        try:
            parent = _run_id(value)
        except InvalidInput:
            raise InvalidInput(f"bad --after {str(value)[:40]!r}: expected a run id") from None
        if parent not in parents:
            parents.append(parent)
    return tuple(parents)


def _count(value: Any, what: str) -> int:
    number = _whole(value)
    if number is None or not 0 <= number <= MAX_INTEGER:
        raise InvalidInput(f"bad {what} {str(value)[:40]!r}: expected a whole number >= 0")
    return number


def _whole(value: Any) -> int | None:
    if isinstance(value, str):
        text = value.strip()
        return int(text) if text.isascii() and text.isdigit() else None
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _priority(value: int | str) -> int:
    if isinstance(value, str):
        if value in PRIORITIES:
            return PRIORITIES[value]
        try:
            value = int(value)
        except ValueError:
            raise InvalidInput(f"bad priority {value!r}: expected high, normal, low or a whole number") from None
    if isinstance(value, bool) or not isinstance(value, int) or not -1000 <= value <= 1000:
        raise InvalidInput(f"bad priority {value!r}: expected high, normal, low or -1000..1000")
    return value


def _metric_name(name: str, kind: str | None) -> None:
    """Refuse a sort by something that cannot be a metric's name, or across kinds."""
    if not kind:
        raise InvalidInput(f"sort by metric {name[:40]!r}: needs a kind (--kind): metrics are compared within one kind")
    if not 0 < len(name) <= MAX_NAME:  # as metrics.numbers keeps them
        raise InvalidInput(f"bad metric name {name[:40]!r}: expected 1 to {MAX_NAME} characters")


def _statuses(status: Sequence[str] | str | None) -> tuple[Status, ...]:
    if status is None:
        return ()
    statuses = [status] if isinstance(status, str) else list(status)
    for s in statuses:
        if s not in Status._value2member_map_:
            raise InvalidInput(f"bad status {s!r}: expected one of {', '.join(x.value for x in Status)}")
    return tuple(Status(s) for s in statuses)


def _tags(tags: dict[str, Any]) -> dict[str, str]:
    if not isinstance(tags, dict):
        raise InvalidInput("tags must be a mapping of names to text")
    for key, value in tags.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise InvalidInput(f"bad tag {str(key)[:40]!r}: expected KEY=VALUE text")
    if sum(len(k) + len(v) for k, v in tags.items()) > MAX_TAG_BYTES:
        raise InvalidInput(f"tags too large: more than {MAX_TAG_BYTES} characters")
    return dict(tags)


def _output_path(output: str | Path) -> str:
    if not isinstance(output, (str, os.PathLike)):
        raise InvalidInput(f"bad OUTPUT {str(output)[:40]!r}: expected a path")
    path = Path(output).expanduser().absolute()
    if not path.parent.is_dir():
        raise InvalidInput(f"bad OUTPUT {output}: folder {path.parent} does not exist")
    if path.is_dir():
        raise InvalidInput(f"bad OUTPUT {output}: is a folder")
    return str(path)


def _check_kernel(name: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise InvalidInput(f"unknown kernel {name!r}: see `jupyter kernelspec list`") from None
