"""The SQLite store: the only module that speaks SQL.

Every status change is one guarded `UPDATE ... WHERE id=? AND status IN (...) RETURNING`
plus one history row, in one `BEGIN IMMEDIATE` transaction. Claims use the partial index
over waiting runs, so they cost the same with 50 or 50,000 finished runs stored.
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .durations import iso
from .errors import IllegalTransition, InvalidInput, RunNotFound, StoreUnavailable
from .models import FINISHED, TRANSITIONS, Run, Status, to_json

SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 60.0
"""Seconds a write waits for another connection's lock before giving up."""
#: Overrides BUSY_TIMEOUT_S (a duration: `5`, `5s`, `2m`); the fault tests set it to seconds.
BUSY_TIMEOUT_VAR = "RUNTOOL_BUSY_TIMEOUT"
_SCHEMA = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    notebook TEXT NOT NULL, kind TEXT NOT NULL, queue TEXT NOT NULL,
    priority INTEGER NOT NULL, status TEXT NOT NULL,
    parameters TEXT NOT NULL, tags TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL,
    timeout_s REAL, kernel TEXT, output_copy TEXT,
    created_at REAL NOT NULL, not_before REAL, started_at REAL, finished_at REAL,
    heartbeat_at REAL, after_id INTEGER, after_on TEXT, ready INTEGER NOT NULL DEFAULT 1,
    submitted_by TEXT NOT NULL, worker TEXT, worker_pid INTEGER, worker_ctime REAL,
    runner_pid INTEGER, runner_ctime REAL, kernel_pid INTEGER, kernel_ctime REAL,
    progress_done INTEGER, progress_total INTEGER, error TEXT
);
CREATE INDEX runs_claim ON runs(priority DESC, id) WHERE status = 'waiting';
CREATE INDEX runs_claim_queue ON runs(queue, priority DESC, id) WHERE status = 'waiting';
CREATE INDEX runs_status ON runs(status, id);
CREATE INDEX runs_kind ON runs(kind, id);
CREATE INDEX runs_queue ON runs(queue, id);
CREATE INDEX runs_after ON runs(after_id) WHERE after_id IS NOT NULL;
CREATE TABLE history (
    run_id INTEGER NOT NULL, seq INTEGER NOT NULL, status TEXT NOT NULL,
    at REAL NOT NULL, by TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', error TEXT,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE paused (queue TEXT PRIMARY KEY, at REAL NOT NULL, by TEXT NOT NULL);
"""
_RUNNABLE = """status = 'waiting' AND ready = 1 AND (not_before IS NULL OR not_before <= :now)
    AND NOT EXISTS (SELECT 1 FROM paused WHERE paused.queue IN (runs.queue, '*'))"""


def busy_timeout() -> float:
    """BUSY_TIMEOUT_S, or the duration in $RUNTOOL_BUSY_TIMEOUT."""
    text = os.environ.get(BUSY_TIMEOUT_VAR)
    if not text:
        return BUSY_TIMEOUT_S
    from .durations import parse_duration

    return parse_duration(text, BUSY_TIMEOUT_VAR)


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


class Store:
    """One SQLite database of runs; `runs_dir` only fills in each record's run_dir."""

    def __init__(self, db_path: Path, runs_dir: Path) -> None:
        self.path = db_path
        self.runs_dir = runs_dir
        self._runs_prefix = f"{runs_dir}/"
        self.busy_timeout = busy_timeout()
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
            self._prepare_schema()

    def close(self) -> None:
        self._conn.close()

    # -- plumbing -----------------------------------------------------------------

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
    def _write(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; `durable=False` skips the fsync of its commit.

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

    def _prepare_schema(self) -> None:
        if self._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        with self._write() as c:
            version = c.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        c.execute(statement)
                c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise StoreUnavailable(
                    f"database {self.path}: schema version {version} is newer than this runtool"
                )

    def _run(self, row: sqlite3.Row) -> Run:
        return Run(
            id=row["id"], notebook=row["notebook"], kind=row["kind"], queue=row["queue"],
            priority=row["priority"], status=Status(row["status"]),
            parameters=json.loads(row["parameters"]), tags=json.loads(row["tags"]),
            attempt=row["attempt"], max_attempts=row["max_attempts"], timeout_s=row["timeout_s"],
            kernel=row["kernel"], output_copy=row["output_copy"], created_at=row["created_at"],
            not_before=row["not_before"], started_at=row["started_at"],
            finished_at=row["finished_at"], heartbeat_at=row["heartbeat_at"],
            after=row["after_id"], after_on=row["after_on"], ready=bool(row["ready"]),
            submitted_by=row["submitted_by"], worker=row["worker"], worker_pid=row["worker_pid"],
            worker_ctime=row["worker_ctime"], runner_pid=row["runner_pid"],
            runner_ctime=row["runner_ctime"], kernel_pid=row["kernel_pid"],
            kernel_ctime=row["kernel_ctime"], progress_done=row["progress_done"],
            progress_total=row["progress_total"],
            error=json.loads(row["error"]) if row["error"] else None,
            run_dir=f"{self._runs_prefix}{row['id']}",  # not pathlib: this runs for every row read
        )

    # -- reading ------------------------------------------------------------------

    def get(self, run_id: int) -> Run:
        with self._errors():
            row = self._conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return self._run(row)

    def history(self, run_id: int) -> builtins.list[dict[str, Any]]:
        with self._errors():
            rows = self._conn.execute(
                "SELECT status, at, by, reason, error FROM history WHERE run_id = ? ORDER BY seq",
                (run_id,),
            ).fetchall()
        return [
            {"status": r["status"], "at": iso(r["at"]), "by": r["by"], "reason": r["reason"],
             "error": json.loads(r["error"]) if r["error"] else None}
            for r in rows
        ]

    def list(
        self,
        statuses: Sequence[str] = (),
        queue: str | None = None,
        kind: str | None = None,
        text: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> builtins.list[Run]:
        where, args = self._filters(statuses, queue, kind, text)
        with self._errors():
            rows = self._conn.execute(
                f"SELECT * FROM runs {where} ORDER BY id DESC LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
        return [self._run(r) for r in rows]

    def count(
        self,
        statuses: Sequence[str] = (),
        queue: str | None = None,
        kind: str | None = None,
        text: str | None = None,
    ) -> int:
        where, args = self._filters(statuses, queue, kind, text)
        with self._errors():
            return int(self._conn.execute(f"SELECT COUNT(*) FROM runs {where}", args).fetchone()[0])

    @staticmethod
    def _filters(
        statuses: Sequence[str], queue: str | None, kind: str | None, text: str | None
    ) -> tuple[str, builtins.list[Any]]:
        clauses: builtins.list[str] = []
        args: builtins.list[Any] = []
        if statuses:
            clauses.append(f"status IN ({','.join('?' * len(statuses))})")
            args.extend(statuses)
        if queue:
            clauses.append("queue = ?")
            args.append(queue)
        if kind:
            clauses.append("kind = ?")
            args.append(kind)
        if text:
            pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            clauses.append(
                "(notebook LIKE ? ESCAPE '\\' OR parameters LIKE ? ESCAPE '\\'"
                " OR tags LIKE ? ESCAPE '\\' OR CAST(id AS TEXT) = ?)"
            )
            args.extend([pattern, pattern, pattern, text.strip()])
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", args

    def counts(self, now: float) -> dict[str, int]:
        """Runs per label: waiting (due now; paused queues included), scheduled, awaiting,
        retrying, and one count per other status."""
        result = {label: 0 for label in
                  ("waiting", "scheduled", "awaiting", "retrying", "processing", "succeeded",
                   "failed", "cancelled")}
        with self._errors():
            for row in self._conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"):
                if row[0] != "waiting":
                    result[row[0]] = row[1]
            row = self._conn.execute(
                """SELECT
                     COALESCE(SUM(ready = 1 AND attempt = 0 AND (not_before IS NULL OR not_before <= :now)), 0),
                     COALESCE(SUM(ready = 1 AND attempt = 0 AND not_before > :now), 0),
                     COALESCE(SUM(ready = 0), 0),
                     COALESCE(SUM(ready = 1 AND attempt > 0), 0)
                   FROM runs INDEXED BY runs_claim WHERE status = 'waiting'""",
                {"now": now},
            ).fetchone()
        result["waiting"], result["scheduled"], result["awaiting"], result["retrying"] = row
        return result

    def kinds_and_queues(self) -> tuple[builtins.list[str], builtins.list[str]]:
        with self._errors():
            kinds = [r[0] for r in self._conn.execute("SELECT DISTINCT kind FROM runs ORDER BY kind")]
            queues = [r[0] for r in self._conn.execute("SELECT DISTINCT queue FROM runs ORDER BY queue")]
        return kinds, queues

    def processing(self) -> builtins.list[Run]:
        with self._errors():
            rows = self._conn.execute(
                "SELECT * FROM runs WHERE status = 'processing' ORDER BY id"
            ).fetchall()
        return [self._run(r) for r in rows]

    def executing_elsewhere(self) -> Run | None:
        """The newest processing run, if any (to say who holds the executor)."""
        with self._errors():
            row = self._conn.execute(
                "SELECT * FROM runs WHERE status = 'processing' ORDER BY started_at DESC LIMIT 1"
            ).fetchone()
        return self._run(row) if row else None

    def has_runnable(self, queues: Sequence[str] | None, now: float) -> bool:
        query = f"SELECT 1 FROM runs WHERE {_RUNNABLE}"
        args: dict[str, Any] = {"now": now}
        if queues:
            query += f" AND queue IN ({','.join(':q%d' % i for i in range(len(queues)))})"
            args.update({f"q{i}": q for i, q in enumerate(queues)})
        with self._errors():
            return self._conn.execute(query + " LIMIT 1", args).fetchone() is not None

    def next_due(self, now: float) -> float | None:
        """The earliest future not_before of a ready waiting run (to wake a worker on time)."""
        with self._errors():
            row = self._conn.execute(
                "SELECT MIN(not_before) FROM runs WHERE status = 'waiting' AND ready = 1 AND not_before > ?",
                (now,),
            ).fetchone()
        return row[0]

    def data_version(self) -> int:
        """Changes whenever another connection commits: a cheap way to notice submissions."""
        with self._errors():
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def paused(self) -> dict[str, str]:
        with self._errors():
            return {r["queue"]: r["by"] for r in self._conn.execute("SELECT queue, by FROM paused")}

    # -- writing ------------------------------------------------------------------

    def insert(self, fields: dict[str, Any], by: str) -> Run:
        """Store a new waiting run (a continuation of a finished parent is resolved at once)."""
        now = time.time()
        with self._write() as c:
            parent = None
            if fields.get("after_id") is not None:
                parent = c.execute(
                    "SELECT status FROM runs WHERE id = ?", (fields["after_id"],)
                ).fetchone()
                if parent is None:
                    raise InvalidInput(f"bad --after {fields['after_id']}: no such run")
            row = dict(fields, status="waiting", created_at=now, submitted_by=by,
                       ready=0 if parent is not None else 1,
                       parameters=to_json(fields["parameters"]), tags=to_json(fields["tags"]))
            names = ", ".join(row)
            marks = ", ".join(f":{k}" for k in row)
            run_id = c.execute(f"INSERT INTO runs ({names}) VALUES ({marks})", row).lastrowid
            assert run_id is not None
            self._history(c, run_id, Status.WAITING, now, by, "submitted")
            if parent is not None and Status(parent["status"]) in FINISHED:
                self._resolve_child(c, run_id, fields["after_id"], Status(parent["status"]), now)
            result = c.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return self._run(result)

    def claim(
        self, queues: Sequence[str] | None, worker: str, worker_pid: int, worker_ctime: float
    ) -> Run | None:
        """Move the next runnable run to processing for this worker, or return None."""
        now = time.time()
        with self._write() as c:
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
                          worker = :worker, worker_pid = :pid, worker_ctime = :ctime,
                          runner_pid = NULL, runner_ctime = NULL, kernel_pid = NULL,
                          kernel_ctime = NULL, progress_done = NULL, progress_total = NULL,
                          error = NULL
                        WHERE id = ({pick}) AND status = 'waiting' RETURNING *""",
                    {"now": now, "queue": queue, "worker": worker, "pid": worker_pid,
                     "ctime": worker_ctime},
                ).fetchone()
                if row is not None:
                    reason = f"attempt {row['attempt']} of {row['max_attempts']}"
                    self._history(c, row["id"], Status.PROCESSING, now, worker, reason)
                    return self._run(row)
        return None

    def transition(
        self,
        run_id: int,
        from_statuses: Sequence[Status],
        to: Status,
        by: str,
        reason: str,
        action: str,
        error: dict[str, Any] | None = None,
        sets: dict[str, Any] | None = None,
        attempt: int | None = None,
    ) -> Run:
        """One guarded status change plus its history row; IllegalTransition if the run moved."""
        with self._write() as c:
            row = self._change(c, run_id, from_statuses, to, by, reason, action, error, sets, attempt)
        return self._run(row)

    def _change(
        self,
        c: sqlite3.Connection,
        run_id: int,
        from_statuses: Sequence[Status],
        to: Status,
        by: str,
        reason: str,
        action: str,
        error: dict[str, Any] | None = None,
        sets: dict[str, Any] | None = None,
        attempt: int | None = None,
    ) -> sqlite3.Row:
        for source in from_statuses:
            if to not in TRANSITIONS[source]:
                raise ValueError(f"{source} -> {to} is not a status change runtool makes")
        now = time.time()
        values: dict[str, Any] = {"status": to.value, **(sets or {})}
        if to in FINISHED:
            values["finished_at"] = now
        if error is not None:
            values["error"] = to_json(error)
        assignments = ", ".join(f"{k} = :set_{k}" for k in values)
        args = {f"set_{k}": v for k, v in values.items()}
        args.update({"id": run_id, "attempt": attempt})
        args.update({f"from{i}": s.value for i, s in enumerate(from_statuses)})
        guard = ", ".join(f":from{i}" for i in range(len(from_statuses)))
        query = f"UPDATE runs SET {assignments} WHERE id = :id AND status IN ({guard})"
        if attempt is not None:
            query += " AND attempt = :attempt"
        row = c.execute(query + " RETURNING *", args).fetchone()
        if row is None:
            current = c.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if current is None:
                raise RunNotFound(run_id)
            raise IllegalTransition(run_id, current["status"], action)
        self._history(c, run_id, to, now, by, reason, error)
        if to in FINISHED:
            self._resolve_children(c, run_id, to, now)
        return row

    def _resolve_children(
        self, c: sqlite3.Connection, parent_id: int, parent: Status | None, now: float
    ) -> None:
        for child in c.execute(
            "SELECT id FROM runs WHERE after_id = ? AND status = 'waiting' AND ready = 0", (parent_id,)
        ).fetchall():
            self._resolve_child(c, child["id"], parent_id, parent, now)

    def _resolve_child(
        self, c: sqlite3.Connection, child_id: int, parent_id: int, parent: Status | None, now: float
    ) -> None:
        """A continuation whose parent finished (or was deleted: None) becomes runnable or cancelled."""
        on = c.execute("SELECT after_on FROM runs WHERE id = ?", (child_id,)).fetchone()["after_on"]
        holds = (
            (on == "success" and parent is Status.SUCCEEDED)
            or (on == "failure" and parent is Status.FAILED)
            or (on == "finish" and parent in (Status.SUCCEEDED, Status.FAILED))
        )
        if holds:
            c.execute("UPDATE runs SET ready = 1 WHERE id = ?", (child_id,))
            return
        what = "was deleted" if parent is None else f"ended {parent.value}"
        reason = f"parent run {parent_id} {what}; this run continues it only on {on}"
        self._change(c, child_id, [Status.WAITING], Status.CANCELLED, "runtool", reason, "cancel")

    @staticmethod
    def _history(
        c: sqlite3.Connection, run_id: int, status: Status, at: float, by: str, reason: str,
        error: dict[str, Any] | None = None,
    ) -> None:
        c.execute(
            """INSERT INTO history (run_id, seq, status, at, by, reason, error) VALUES
               (:id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM history WHERE run_id = :id),
                :status, :at, :by, :reason, :error)""",
            {"id": run_id, "status": status.value, "at": at, "by": by, "reason": reason,
             "error": to_json(error) if error else None},
        )

    def retry(self, run_id: int, by: str) -> Run:
        with self._write() as c:
            row = c.execute("SELECT after_id FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise RunNotFound(run_id)
            ready = 1
            if row["after_id"] is not None:
                parent = c.execute("SELECT status FROM runs WHERE id = ?", (row["after_id"],)).fetchone()
                ready = 0 if parent is not None and Status(parent["status"]) not in FINISHED else 1
            sets = {"attempt": 0, "not_before": None, "error": None, "started_at": None,
                    "finished_at": None, "progress_done": None, "progress_total": None,
                    "ready": ready}
            result = self._change(c, run_id, [Status.FAILED, Status.CANCELLED], Status.WAITING,
                                  by, "retried", "retry", sets=sets)
        return self._run(result)

    def record_processes(
        self, run_id: int, attempt: int, runner: tuple[int, float] | None,
        kernel: tuple[int, float] | None,
    ) -> None:
        sets: builtins.list[str] = []
        args: dict[str, float] = {"id": run_id, "attempt": attempt}
        if runner:
            sets.append("runner_pid = :rp, runner_ctime = :rc")
            args.update(rp=runner[0], rc=runner[1])
        if kernel:
            sets.append("kernel_pid = :kp, kernel_ctime = :kc")
            args.update(kp=kernel[0], kc=kernel[1])
        with self._write(durable=False) as c:
            c.execute(
                f"UPDATE runs SET {', '.join(sets)} WHERE id = :id AND attempt = :attempt"
                " AND status = 'processing'",
                args,
            )

    def heartbeat(self, run_id: int, attempt: int, progress: tuple[int, int] | None) -> None:
        with self._write(durable=False) as c:
            if progress is None:
                c.execute(
                    "UPDATE runs SET heartbeat_at = ? WHERE id = ? AND attempt = ? AND status = 'processing'",
                    (time.time(), run_id, attempt),
                )
            else:
                c.execute(
                    """UPDATE runs SET heartbeat_at = ?, progress_done = ?, progress_total = ?
                       WHERE id = ? AND attempt = ? AND status = 'processing'""",
                    (time.time(), progress[0], progress[1], run_id, attempt),
                )

    def delete(self, run_id: int, allowed: Sequence[Status], action: str = "delete") -> Run:
        """Remove a run and its history if its status is one of `allowed`; cancels its continuations."""
        now = time.time()
        with self._write() as c:
            row = c.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise RunNotFound(run_id)
            if Status(row["status"]) not in allowed:
                raise IllegalTransition(run_id, row["status"], action)
            c.execute("DELETE FROM runs WHERE id = ? AND status = ?", (run_id, row["status"]))
            c.execute("DELETE FROM history WHERE run_id = ?", (run_id,))
            self._resolve_children(c, run_id, None, now)
        return self._run(row)

    def finished_before(self, cutoff: float, statuses: Sequence[Status] = tuple(FINISHED)) -> builtins.list[int]:
        marks = ",".join("?" * len(statuses))
        with self._errors():
            rows = self._conn.execute(
                f"SELECT id FROM runs WHERE finished_at < ? AND status IN ({marks}) ORDER BY id",
                (cutoff, *[s.value for s in statuses]),
            ).fetchall()
        return [r[0] for r in rows]

    def pause(self, queue: str, by: str) -> None:
        with self._write() as c:
            c.execute("INSERT OR REPLACE INTO paused (queue, at, by) VALUES (?, ?, ?)",
                      (queue, time.time(), by))

    def resume(self, queue: str | None) -> None:
        with self._write() as c:
            if queue is None:
                c.execute("DELETE FROM paused")
            else:
                c.execute("DELETE FROM paused WHERE queue = ?", (queue,))

    def integrity_check(self) -> str:
        with self._errors():
            return str(self._conn.execute("PRAGMA integrity_check").fetchone()[0])
