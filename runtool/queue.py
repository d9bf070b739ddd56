"""The store interface, the factory that picks a store, and the SQLite store.

Stores only record: the rules about runs (which status changes are allowed, when a
continuation becomes runnable, when a retry is due) live in `lifecycle`, which makes every
write out of the primitives of one `Tx`. Each status change is one guarded update plus its
history row (`Tx.change`), so no caller can change a status without a trace.
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

from . import sqlite_reads, sqlite_schema
from .config import DB_FILE, RUNS_DIR, Settings, database_url
from .durations import iso, parse_duration
from .errors import InvalidInput, RunNotFound, StoreUnavailable
from .models import Beat, Change, Claimant, HistoryEntry, NewRun, Run, RunFilter, Status, WorkerInfo
from .sqlite_tx import SQLiteTx, add_history
from .store_common import process_assignments, run_from_row

BUSY_TIMEOUT_S = 60.0
"""Seconds a write waits for another connection's lock before giving up."""
#: Overrides BUSY_TIMEOUT_S (a duration: `5`, `5s`, `2m`); the fault tests set it to seconds.
BUSY_TIMEOUT_VAR = "RUNTOOL_BUSY_TIMEOUT"
WAKE_CHECK_S = 0.1
"""How often an idle SQLite worker checks whether another process committed."""


class Tx(Protocol):
    """One write transaction: the primitives `lifecycle` builds every change from."""

    now: float
    """The store's clock at the start of the transaction (epoch seconds)."""

    def get(self, run_id: int) -> Run | None: ...

    def insert(self, new: NewRun, by: str, ready: bool) -> int:
        """Store a waiting run and its "submitted" history row; returns its id."""

    def change(self, run_id: int, from_statuses: Sequence[Status], change: Change,
               attempt: int | None = None) -> Run | None:
        """Apply `change` if the run is in one of `from_statuses` (and at `attempt`, if
        given), with its history row; None, changing nothing, if it is not."""

    def parents(self, run_id: int) -> builtins.list[tuple[int, Status | None]]:
        """The run's parents and their statuses (None: deleted)."""

    def awaiting_children(self, parent_id: int) -> builtins.list[int]:
        """Waiting continuations of `parent_id` that are not runnable yet."""

    def set_ready(self, run_id: int) -> None:
        """Mark a waiting continuation runnable (its parents finished as it asked)."""

    def set_tags(self, run_id: int, tags: dict[str, str]) -> None:
        """Replace the tags of a run (a sweep's first run learns its own id as sweep tag)."""

    def remove(self, run_id: int, status: Status) -> bool:
        """Delete the run and its history if it is still `status`."""


class Store(Protocol):
    """Where runs are recorded. Reads are single statements; writes go through `write()`,
    except the worker's own: claim, process records and heartbeats."""

    runs_dir: Path
    shared: bool
    """Whether several machines may use it (PostgreSQL); SQLite: the home is one machine."""

    def close(self) -> None: ...

    def now(self) -> float:
        """The store's clock (epoch seconds): the one that stamps and compares run times."""

    def write(self, durable: bool = True) -> AbstractContextManager[Tx]:
        """One write transaction; it commits when the block ends, and rolls back on error."""

    # -- reading
    def get(self, run_id: int) -> Run:
        """The run; RunNotFound if there is none."""

    def history(self, run_id: int) -> builtins.list[HistoryEntry]:
        """The run's status changes, oldest first."""

    def list(self, where: RunFilter, limit: int, offset: int) -> builtins.list[Run]:
        """Runs matching `where`, newest first or by `where.sort_metric` (a run whose id is
        the search text first)."""

    def count(self, where: RunFilter, cap: int | None = None) -> int:
        """How many runs match `where`; with `cap`, counting stops past `cap` (cap + 1)."""

    def counts(self, now: float) -> dict[str, int]:
        """Runs per label (models.LABELS)."""

    def kinds_and_queues(self) -> tuple[builtins.list[str], builtins.list[str]]:
        """Every kind and every queue that has runs, sorted."""

    def processing(self) -> builtins.list[Run]: ...

    def has_runnable(self, queues: Sequence[str], now: float) -> bool:
        """Whether a claim could succeed now (in `queues`, or any queue when empty)."""

    def next_due(self, now: float) -> float | None:
        """The earliest future `not_before` of a runnable-but-for-time run."""

    def change_marker(self) -> int:
        """A number that changes when another connection commits (to wake idle workers)."""

    def wait_for_change(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for another connection to commit a change that may
        make a run runnable; True as soon as one may have (a spurious True is harmless)."""

    def paused(self) -> dict[str, str]:
        """Paused queue ("*": every queue) -> who paused it."""

    def finished_before(self, cutoff: float, statuses: Sequence[Status]) -> builtins.list[int]:
        """Ids of runs in `statuses` that finished before `cutoff`, oldest first."""

    # -- the worker's writes
    def claim(self, queues: Sequence[str], claimant: Claimant) -> Run | None:
        """Move the next runnable run (queue order, then priority, then age) to processing
        for `claimant`, with its history row; None if nothing is runnable."""

    def record_processes(self, run_id: int, attempt: int, runner: tuple[int, float] | None,
                         kernel: tuple[int, float] | None) -> None:
        """Note the (pid, start time) of the attempt's runner and kernel."""

    def heartbeat(self, run_id: int, attempt: int, progress: tuple[int, int] | None,
                  worker: str | None = None) -> Beat:
        """Note that the attempt is alive, and its cells done/total, if the run is still
        processing that attempt (for `worker`, if given); the Beat says whether it was, and
        any force-cancel asked of it from another machine."""

    def request_cancel(self, run_id: int, attempt: int, by: str, reason: str) -> bool:
        """Ask the worker of a processing attempt to end it (a force-cancel from another
        machine); False if the attempt is no longer processing, or the store is one machine's."""

    # -- the fleet
    def worker_beat(self, info: WorkerInfo) -> None:
        """Note (or renew) a worker or drain serving this store, at the store's clock."""

    def worker_gone(self, name: str) -> None:
        """Forget a worker that stopped."""

    def workers(self) -> builtins.list[WorkerInfo]:
        """Every worker and drain noted, by machine."""

    def forget_workers(self, before: float) -> int:
        """Remove the rows of workers and drains whose last heartbeat is older than `before`
        (the store's clock); how many were removed."""

    def pause(self, queue: str, by: str) -> None: ...

    def resume(self, queue: str | None) -> None:
        """Resume `queue`, or every queue (the "*" pause included) when None."""


def open_store(home: Path, settings: Settings) -> Store:
    """The store of `home`: the PostgreSQL database of $RUNTOOL_DATABASE_URL or of
    `[store] url` in its runtool.toml, else `runtool.db` in it (SQLite)."""
    url = database_url(settings)
    if url:
        try:
            from .pg_store import PostgresStore
        except ImportError:
            raise StoreUnavailable(f"{describe_url(url)}: PostgreSQL needs psycopg:"
                                   " pip install 'runtool[postgres]'") from None
        return PostgresStore(url, home / RUNS_DIR)
    return SQLiteStore(home / DB_FILE, home / RUNS_DIR)


def describe_url(url: str) -> str:
    """A database URL as errors name it: scheme, host and path, never a password."""
    scheme, _, rest = url.partition("://")
    host = rest.rpartition("@")[2]
    return f"database {scheme}://{host}"


# -- SQLite -------------------------------------------------------------------------

_RUNNABLE = """status = 'waiting' AND ready = 1 AND (not_before IS NULL OR not_before <= :now)
    AND NOT EXISTS (SELECT 1 FROM paused WHERE paused.queue IN (runs.queue, '*'))"""


def busy_timeout() -> float:
    """BUSY_TIMEOUT_S, or the duration in $RUNTOOL_BUSY_TIMEOUT."""
    text = os.environ.get(BUSY_TIMEOUT_VAR)
    return parse_duration(text, BUSY_TIMEOUT_VAR) if text else BUSY_TIMEOUT_S


def _disk_trouble(folder: Path) -> str:
    """Why the file system may have failed SQLite, which only says 'disk I/O error' or
    'unable to open database file' when its disk is full or read-only."""
    try:
        fs = os.statvfs(folder)
    except OSError:
        return ""
    if fs.f_flag & os.ST_RDONLY:
        return f" (the file system of {folder} is read-only)"
    free = fs.f_bavail * fs.f_frsize
    if free < 1024 * 1024:
        return f" (no space left: {free // 1024} KiB free on the file system of {folder})"
    if not os.access(folder, os.W_OK):
        return f" (no permission to write in {folder})"
    return ""


class SQLiteStore:
    """One SQLite database of runs (WAL; every status change fsynced before it returns)."""

    shared = False

    def __init__(self, db_path: Path, runs_dir: Path) -> None:
        self.path = db_path
        self.runs_dir = runs_dir
        self._runs_prefix = f"{runs_dir}/"
        self.busy_timeout = busy_timeout()
        self._marker: int | None = None
        with self._errors():
            self._conn = sqlite3.connect(
                db_path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            if self._conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                self._conn.execute("PRAGMA journal_mode = WAL")
            # FULL: a commit (a `submit` that returned) is on disk before it returns.
            self._conn.execute("PRAGMA synchronous = FULL")
            sqlite_schema.prepare(self._conn, str(db_path))

    def close(self) -> None:
        self._conn.close()

    def now(self) -> float:
        return time.time()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            text = str(exc)
            if "locked" in text or "busy" in text:
                text = f"locked by another connection for more than {self.busy_timeout:g} s"
            else:
                text += _disk_trouble(self.path.parent)
            raise StoreUnavailable(f"database {self.path}: {text}") from None
        except UnicodeEncodeError as exc:  # lone surrogates: argv or file names with undecodable bytes
            near = exc.object[max(0, exc.start - 30): exc.end + 30] if isinstance(exc.object, str) else ""
            raise InvalidInput(f"bad text {near!r}: not valid UTF-8") from None

    @contextmanager
    def _transaction(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """`BEGIN IMMEDIATE` ... `COMMIT`; `durable=False` skips the fsync of the commit.

        Non-durable writes are those a power cut may lose without harm: heartbeats,
        progress and pids, which mean nothing once the machine is down. They survive a killed
        process all the same (the WAL is in the OS's cache), and the next durable commit's
        fsync makes them durable too, since the WAL is one file written in order. A claim
        stays durable: a run that brings the machine down must still use up its attempts.
        """
        with self._errors():
            if not durable:
                self._conn.execute("PRAGMA synchronous = NORMAL")
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            finally:
                if not durable:
                    self._conn.execute("PRAGMA synchronous = FULL")

    @contextmanager
    def write(self, durable: bool = True) -> Iterator[Tx]:
        with self._transaction(durable) as conn:
            yield SQLiteTx(self, conn, time.time())

    def row_to_run(self, row: sqlite3.Row) -> Run:
        return run_from_row(row, f"{self._runs_prefix}{row['id']}",
                            json.loads(row["after_ids"]) if row["after_ids"] else [])

    # -- reading ------------------------------------------------------------------

    def get(self, run_id: int) -> Run:
        with self._errors():
            row = self._conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return self.row_to_run(row)

    def history(self, run_id: int) -> builtins.list[HistoryEntry]:
        with self._errors():
            rows = self._conn.execute(
                "SELECT status, at, by, reason, error FROM history WHERE run_id = ? ORDER BY seq",
                (run_id,),
            ).fetchall()
        return [
            {"status": r["status"], "at": iso(r["at"]) or "", "by": r["by"], "reason": r["reason"],
             "error": json.loads(r["error"]) if r["error"] else None}
            for r in rows
        ]

    def list(self, where: RunFilter, limit: int, offset: int) -> builtins.list[Run]:
        with self._errors():
            return sqlite_reads.list_runs(self._conn, self.row_to_run, where, limit, offset)

    def count(self, where: RunFilter, cap: int | None = None) -> int:
        with self._errors():
            return sqlite_reads.count(self._conn, self.row_to_run, where, cap)

    def counts(self, now: float) -> dict[str, int]:
        with self._errors():
            return sqlite_reads.counts(self._conn, now)

    def kinds_and_queues(self) -> tuple[builtins.list[str], builtins.list[str]]:
        with self._errors():
            return sqlite_reads.kinds_and_queues(self._conn)

    def processing(self) -> builtins.list[Run]:
        with self._errors():
            rows = self._conn.execute("SELECT * FROM runs WHERE status = 'processing' ORDER BY id").fetchall()
        return [self.row_to_run(r) for r in rows]

    def has_runnable(self, queues: Sequence[str], now: float) -> bool:
        query = f"SELECT 1 FROM runs WHERE {_RUNNABLE}"
        args: dict[str, Any] = {"now": now}
        if queues:
            query += f" AND queue IN ({','.join(':q%d' % i for i in range(len(queues)))})"
            args.update({f"q{i}": q for i, q in enumerate(queues)})
        with self._errors():
            return self._conn.execute(query + " LIMIT 1", args).fetchone() is not None

    def next_due(self, now: float) -> float | None:
        with self._errors():
            row = self._conn.execute(
                "SELECT MIN(not_before) FROM runs WHERE status = 'waiting' AND ready = 1 AND not_before > ?",
                (now,),
            ).fetchone()
        return row[0]

    def change_marker(self) -> int:
        with self._errors():
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def wait_for_change(self, timeout: float) -> bool:
        """Polls data_version (it changes when another connection commits) every WAKE_CHECK_S."""
        if self._marker is None:
            self._marker = self.change_marker()
        until = time.monotonic() + timeout
        while True:
            marker = self.change_marker()
            if marker != self._marker:
                self._marker = marker
                return True
            left = until - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(WAKE_CHECK_S, left))

    def paused(self) -> dict[str, str]:
        with self._errors():
            return {r["queue"]: r["by"] for r in self._conn.execute("SELECT queue, by FROM paused")}

    def finished_before(self, cutoff: float, statuses: Sequence[Status]) -> builtins.list[int]:
        marks = ",".join("?" * len(statuses))
        with self._errors():
            rows = self._conn.execute(
                f"SELECT id FROM runs WHERE finished_at < ? AND status IN ({marks}) ORDER BY id",
                (cutoff, *[s.value for s in statuses]),
            ).fetchall()
        return [r[0] for r in rows]

    def dump(self) -> dict[str, Any]:
        """Every row of every table, as stored (for moving the runs to another store), and
        the highest id ever given (ids are never reused)."""
        with self._errors():
            tables: dict[str, Any] = {table: [dict(r) for r in self._conn.execute(f"SELECT * FROM {table}")]
                      for table in ("runs", "history", "run_parents", "paused")}
            row = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'runs'").fetchone()
        for run in tables["runs"]:
            run["after_ids"] = json.loads(run["after_ids"]) if run["after_ids"] else None
            run["ready"] = bool(run["ready"])
        tables["last_id"] = max([row[0] if row else 0, *(r["id"] for r in tables["runs"])])
        return tables

    def integrity_check(self) -> str:
        """SQLite's own check of the database file ("ok" when sound)."""
        with self._errors():
            return str(self._conn.execute("PRAGMA integrity_check").fetchone()[0])

    # -- the worker's writes ------------------------------------------------------

    def claim(self, queues: Sequence[str], claimant: Claimant) -> Run | None:
        with self._transaction() as c:
            now = time.time()
            choices: Sequence[str | None] = list(queues) if queues else [None]
            for queue in choices:
                # INDEXED BY: left to itself the planner takes runs_status and sorts every
                # waiting run (O(waiting) per claim); the partial index is already in order.
                index = "runs_claim" if queue is None else "runs_claim_queue"
                pick = f"SELECT id FROM runs INDEXED BY {index} WHERE {_RUNNABLE}"
                if queue is not None:
                    pick += " AND queue = :queue"
                pick += " ORDER BY priority DESC, id LIMIT 1"
                row = c.execute(
                    f"""UPDATE runs SET status = 'processing', attempt = attempt + 1,
                          started_at = :now, finished_at = NULL, heartbeat_at = :now,
                          worker = :worker, machine = :machine, worker_pid = :pid,
                          worker_ctime = :ctime, runner_pid = NULL, runner_ctime = NULL,
                          kernel_pid = NULL, kernel_ctime = NULL, progress_done = NULL,
                          progress_total = NULL, error = NULL
                        WHERE id = ({pick}) AND status = 'waiting' RETURNING *""",
                    {"now": now, "queue": queue, "worker": claimant.name, "machine": claimant.machine,
                     "pid": claimant.pid, "ctime": claimant.ctime},
                ).fetchone()
                if row is not None:
                    reason = f"attempt {row['attempt']} of {row['max_attempts']}"
                    add_history(c, row["id"], Status.PROCESSING, now, claimant.name, reason)
                    return self.row_to_run(row)
        return None

    def record_processes(self, run_id: int, attempt: int, runner: tuple[int, float] | None,
                         kernel: tuple[int, float] | None) -> None:
        sets, args = process_assignments(runner, kernel, lambda name: f":{name}")
        if not sets:
            return
        args.update(id=run_id, attempt=attempt)
        with self._transaction(durable=False) as c:
            c.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = :id AND attempt = :attempt"
                      " AND status = 'processing'", args)

    def heartbeat(self, run_id: int, attempt: int, progress: tuple[int, int] | None,
                  worker: str | None = None) -> Beat:
        done, total = progress if progress is not None else (None, None)
        with self._transaction(durable=False) as c:
            row = c.execute(
                """UPDATE runs SET heartbeat_at = ?, progress_done = COALESCE(?, progress_done),
                     progress_total = COALESCE(?, progress_total)
                   WHERE id = ? AND attempt = ? AND status = 'processing' AND (? IS NULL OR worker = ?)
                   RETURNING id""",
                (time.time(), done, total, run_id, attempt, worker, worker),
            ).fetchone()
        return Beat(own=row is not None)

    def request_cancel(self, run_id: int, attempt: int, by: str, reason: str) -> bool:
        return False  # the home is one machine: a force-cancel ends the run's processes itself

    def worker_beat(self, info: WorkerInfo) -> None:
        with self._transaction(durable=False) as c:
            now = time.time()
            c.execute(
                """INSERT INTO workers (name, machine, pid, kind, queues, started_at, heartbeat_at, run_id)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT (name) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
                     run_id = excluded.run_id, queues = excluded.queues""",
                (info.name, info.machine, info.pid, info.kind, json.dumps(info.queues), now, now, info.run_id))

    def worker_gone(self, name: str) -> None:
        with self._transaction(durable=False) as c:
            c.execute("DELETE FROM workers WHERE name = ?", (name,))

    def forget_workers(self, before: float) -> int:
        with self._transaction(durable=False) as c:
            return int(c.execute("DELETE FROM workers WHERE heartbeat_at < ?", (before,)).rowcount)

    def workers(self) -> builtins.list[WorkerInfo]:
        with self._errors():
            rows = self._conn.execute("SELECT * FROM workers ORDER BY machine, name").fetchall()
        return [WorkerInfo(name=r["name"], machine=r["machine"], pid=r["pid"], queues=json.loads(r["queues"]),
                           started_at=r["started_at"], heartbeat_at=r["heartbeat_at"], run_id=r["run_id"],
                           kind=r["kind"]) for r in rows]

    def pause(self, queue: str, by: str) -> None:
        with self._transaction() as c:
            c.execute("INSERT OR REPLACE INTO paused (queue, at, by) VALUES (?, ?, ?)", (queue, time.time(), by))

    def resume(self, queue: str | None) -> None:
        with self._transaction() as c:
            if queue is None:
                c.execute("DELETE FROM paused")
            else:
                c.execute("DELETE FROM paused WHERE queue = ?", (queue,))
