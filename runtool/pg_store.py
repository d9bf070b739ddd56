"""The PostgreSQL store: the `queue.Store` interface over a database shared by machines.

One autocommit connection for reads and short explicit transactions (never one open while a
run executes), and, for an idle worker, a second one that LISTENs for the notifications that
submit, retry, resume and a continuation becoming runnable send in their own transactions.
Every time stamped on a run comes from the server's clock. A connection found lost is
opened again: at once where redoing the statement is harmless (reads, heartbeats, a
transaction that had not begun), else on the next call after `StoreUnavailable`.
"""

from __future__ import annotations

import builtins
import functools
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pgerrors
from psycopg import sql

from . import pg_connect, pg_reads, pg_schema
from .errors import Refused
from .pg_schema import RUN_COLUMNS as _COLS
from .models import Beat, Claimant, HistoryEntry, Run, RunFilter, Status, WorkerInfo
from .durations import iso
from .pg_tx import PostgresTx, nul_safe, words_of
from .store_common import process_assignments, run_from_row

MARKER_WAIT_S = 0.1
"""How long `change_marker` waits for a notification still on its way."""

_NOW = "extract(epoch from now())::float8"
_RUNNABLE = f"""status = 'waiting' AND ready AND (not_before IS NULL OR not_before <= {_NOW})
    AND NOT EXISTS (SELECT 1 FROM paused WHERE paused.queue IN (runs.queue, '*'))"""
T = TypeVar("T")


class PostgresStore:
    """Runs in a PostgreSQL database (schema made or migrated on first open)."""

    shared = True

    def __init__(self, url: str, runs_dir: Path, application_name: str = "runtool") -> None:
        self.url = url
        self.where = pg_connect.describe(url)
        self.runs_dir = runs_dir
        self._runs_prefix = f"{runs_dir}/"
        self.application_name = f"{application_name} {os.getpid()}"
        self._conn: psycopg.Connection[dict[str, Any]] | None = None
        self._listener: psycopg.Connection[Any] | None = None
        self._listened = False
        self._marker = 0
        conn = self._connection()
        with self._errors():
            pg_schema.prepare(conn, self.where)

    # -- connections ---------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[dict[str, Any]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._drop()
            self._conn = pg_connect.connect(self.url, self.where, self.application_name)
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
        self._conn = None

    def close(self) -> None:
        self._drop()
        if self._listener is not None:
            try:
                self._listener.close()
            except psycopg.Error:
                pass
            self._listener = None

    def _errors(self) -> AbstractContextManager[None]:
        return pg_connect.errors(self.where)

    def _call(self, work: Callable[[psycopg.Connection[dict[str, Any]]], T], redo: bool = True) -> T:
        """`work` on the connection; on a lost connection, once more on a new one when
        `redo` (harmless to repeat) or when the server said it had ended the session."""
        for attempt in (1, 2):
            conn = self._connection()
            try:
                with self._errors():
                    try:
                        return work(conn)
                    except psycopg.OperationalError as exc:
                        lost = conn.closed or conn.broken
                        if attempt == 1 and lost and (redo or exc.sqlstate in pg_connect.SESSION_ENDED):
                            self._drop()
                            continue
                        raise
            finally:
                if self._conn is not None and self._conn.broken:
                    self._drop()
        raise AssertionError("unreachable")

    def fetch_one(self, query: str, args: Any = None, redo: bool = True) -> dict[str, Any] | None:
        """The first row of one statement (`_call`: redone on a lost connection when `redo`)."""
        return self._call(lambda c: c.execute(query, args).fetchone(), redo)  # type: ignore[arg-type]

    def fetch_all(self, query: str, args: Any = None) -> builtins.list[dict[str, Any]]:
        """Every row of one read statement (redone once on a lost connection)."""
        return self._call(lambda c: c.execute(query, args).fetchall())  # type: ignore[arg-type]

    def now(self) -> float:
        row = self.fetch_one("SELECT extract(epoch from clock_timestamp())::float8 AS now")
        assert row is not None
        return float(row["now"])

    def session_user(self) -> str:
        """The role the server authenticated (the acting user with identity = "database")."""
        row = self.fetch_one("SELECT session_user AS who")
        assert row is not None
        return str(row["who"])

    def database_role(self) -> str | None:
        """The runtool role the server gives session_user: admin for a superuser or a member
        of the tables' owner, else that of its runtool_* group role (`grant`), else None."""
        row = self.fetch_one(
            """SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = session_user)
                  OR pg_has_role(session_user, (SELECT tableowner FROM pg_tables WHERE tablename = 'runs'
                                                AND schemaname = current_schema()), 'MEMBER') AS owner,
                  ARRAY(SELECT g.rolname::text FROM pg_roles g WHERE g.rolname = ANY(%s)
                        AND pg_has_role(session_user, g.oid, 'MEMBER')) AS groups""",
            (list(pg_schema.GROUP_ROLES.values()),))
        assert row is not None
        if row["owner"]:
            return "admin"
        for role in ("admin", "operator", "viewer"):
            if pg_schema.GROUP_ROLES[role] in row["groups"]:
                return role
        return None

    def grant(self, user: str, role: str) -> None:
        """Make database role `user` a member of `role`'s group role (and of no other)."""
        conn = self._connection()
        with self._errors():
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone() is None:
                raise Refused(f"{self.where}: no database role {user!r}: create it first"
                              f" (CREATE ROLE \"{user}\" LOGIN)")
            pg_schema.ensure_group_roles(conn)
            with conn.transaction():
                for name, group in pg_schema.GROUP_ROLES.items():
                    verb = "GRANT {} TO {}" if name == role else "REVOKE {} FROM {}"
                    conn.execute(sql.SQL(verb).format(sql.Identifier(group), sql.Identifier(user)))

    def load(self, dump: dict[str, Any]) -> None:
        """Insert the rows of another store's `dump` (ids kept) into this empty database,
        in one transaction; Refused if it already holds runs."""
        dump = dict(dump, run_words=[
            {"run_id": run["id"], "words": words_of(run["notebook"], run["parameters"], run["tags"], run["kind"],
                                                    run["queue"])} for run in dump["runs"]])
        columns = {"runs": [c for c in dump["runs"][0]] if dump["runs"] else [], "run_words": ["run_id", "words"],
                   "history": ["run_id", "seq", "status", "at", "by", "reason", "error"],
                   "run_parents": ["parent_id", "child_id"], "paused": ["queue", "at", "by"]}
        with self.write() as tx:
            held = tx.c.execute("SELECT count(*) AS n FROM runs").fetchone()
            if held and held["n"]:
                raise Refused(f"{self.where}: already holds {held['n']} run(s); move into an empty database")
            for table, names in columns.items():
                rows = dump[table]
                if not rows:
                    continue
                query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                    sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, names)),
                    sql.SQL(", ").join(sql.Placeholder() * len(names)))
                with tx.c.cursor() as cursor:
                    cursor.executemany(query, [[nul_safe(r[n]) if isinstance(r[n], str) else r[n] for n in names]
                                               for r in rows])
            if dump["last_id"]:
                tx.c.execute("SELECT setval(pg_get_serial_sequence('runs', 'id'), %s)", (dump["last_id"],))
            tx.notify("*")

    @contextmanager
    def write(self, durable: bool = True) -> Iterator[PostgresTx]:
        conn, now = self._begin()
        with self._errors():
            try:
                if not durable:  # heartbeats and pids: a power cut may lose them (as on SQLite)
                    conn.execute("SET LOCAL synchronous_commit = off")
                yield PostgresTx(self, conn, now)
            except BaseException:
                try:
                    conn.execute("ROLLBACK")
                except psycopg.Error:
                    self._drop()
                raise
            conn.execute("COMMIT")

    def _begin(self) -> tuple[psycopg.Connection[dict[str, Any]], float]:
        """BEGIN and the transaction's time; a connection found lost is replaced once,
        nothing having been done on it."""
        def begin(conn: psycopg.Connection[dict[str, Any]]) -> tuple[psycopg.Connection[dict[str, Any]], float]:
            # one round trip: without parameters psycopg sends both statements at once
            cursor = conn.execute(f"BEGIN; SELECT {_NOW} AS now")  # type: ignore[arg-type]
            cursor.nextset()
            row = cursor.fetchone()
            assert row is not None
            return conn, float(row["now"])
        return self._call(begin)

    # -- notifications (idle workers) ---------------------------------------------

    def wait_for_change(self, timeout: float) -> bool:
        """Wait up to `timeout` s for a notification; True if one came, or if the listening
        connection was (re)opened, when anything may have been missed."""
        if self._listener is None or self._listener.closed or self._listener.broken:
            self._listener = None
            self._listener = pg_connect.listen(self.url, self.where, f"{self.application_name} listen")
            return True
        try:
            got = any(True for _ in self._listener.notifies(timeout=timeout, stop_after=1))
            if got:  # take the rest of a burst now: one look serves them all
                for _ in self._listener.notifies(timeout=0):
                    pass
        except psycopg.Error:
            try:
                self._listener.close()
            except psycopg.Error:
                pass
            self._listener = None
            return True
        if got:
            self._marker += 1
        return got

    def change_marker(self) -> int:
        """Counts the notifications seen by `wait_for_change` (SQLite: its data_version);
        the first call starts listening. A notification reaches the listening connection a
        moment after the commit that sent it: this waits up to MARKER_WAIT_S for one."""
        if self._listener is None:
            self.wait_for_change(0)
        self.wait_for_change(MARKER_WAIT_S)
        return self._marker

    # -- reading ------------------------------------------------------------------

    def row_to_run(self, row: dict[str, Any]) -> Run:
        return run_from_row(row, f"{self._runs_prefix}{row['id']}", list(row["after_ids"] or []),
                            tuple(json.loads(row["cancel_requested"])) if row.get("cancel_requested") else None)

    def get(self, run_id: int) -> Run:
        from .errors import RunNotFound

        row = self.fetch_one(f"SELECT {_COLS} FROM runs WHERE id = %s", (run_id,))
        if row is None:
            raise RunNotFound(run_id)
        return self.row_to_run(row)

    def history(self, run_id: int) -> builtins.list[HistoryEntry]:
        rows = self.fetch_all('SELECT status, at, "by", reason, error FROM history WHERE run_id = %s ORDER BY seq',
                         (run_id,))
        return [
            {"status": r["status"], "at": iso(r["at"]) or "", "by": r["by"], "reason": r["reason"],
             "error": json.loads(r["error"]) if r["error"] else None}
            for r in rows
        ]

    def list(self, where: RunFilter, limit: int, offset: int) -> builtins.list[Run]:
        return pg_reads.list_runs(self, where, limit, offset)

    def count(self, where: RunFilter, cap: int | None = None) -> int:
        return pg_reads.count(self, where, cap)

    def counts(self, now: float) -> dict[str, int]:
        return pg_reads.counts(self, now)

    def kinds_and_queues(self) -> tuple[builtins.list[str], builtins.list[str]]:
        return pg_reads.kinds_and_queues(self)

    def processing(self) -> builtins.list[Run]:
        rows = self.fetch_all(f"SELECT {_COLS} FROM runs WHERE status = 'processing' ORDER BY id")
        return [self.row_to_run(r) for r in rows]

    def has_runnable(self, queues: Sequence[str], now: float) -> bool:
        query = f"SELECT 1 AS one FROM runs WHERE {_RUNNABLE.replace(_NOW, '%(now)s')}"
        args: dict[str, Any] = {"now": now}
        if queues:
            query += " AND queue = ANY(%(queues)s)"
            args["queues"] = list(queues)
        return self.fetch_one(query + " LIMIT 1", args) is not None

    def next_due(self, now: float) -> float | None:
        row = self.fetch_one("SELECT MIN(not_before) AS due FROM runs WHERE status = 'waiting' AND ready"
                        " AND not_before > %s", (now,))
        return row["due"] if row else None

    def paused(self) -> dict[str, str]:
        return {r["queue"]: r["by"] for r in self.fetch_all('SELECT queue, "by" FROM paused')}

    def finished_before(self, cutoff: float, statuses: Sequence[Status]) -> builtins.list[int]:
        rows = self.fetch_all("SELECT id FROM runs WHERE finished_at < %s AND status = ANY(%s) ORDER BY id",
                         (cutoff, [s.value for s in statuses]))
        return [r["id"] for r in rows]

    # -- the worker's writes ------------------------------------------------------

    def claim(self, queues: Sequence[str], claimant: Claimant) -> Run | None:
        choices: Sequence[str | None] = list(queues) if queues else [None]
        for queue in choices:
            pick = f"SELECT id FROM runs WHERE {_RUNNABLE}"
            if queue is not None:
                pick += " AND queue = %(queue)s"
            pick += " ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED"
            # One statement, so one short transaction: the claim and its history row.
            query = f"""WITH claimed AS (
                  UPDATE runs SET status = 'processing', attempt = attempt + 1,
                    started_at = {_NOW}, finished_at = NULL, heartbeat_at = {_NOW},
                    worker = %(worker)s, machine = %(machine)s, worker_role = session_user,
                    worker_pid = %(pid)s,
                    worker_ctime = %(ctime)s, runner_pid = NULL, runner_ctime = NULL,
                    kernel_pid = NULL, kernel_ctime = NULL, progress_done = NULL,
                    progress_total = NULL, error = NULL
                  WHERE id = ({pick}) AND status = 'waiting' RETURNING {_COLS}),
                noted AS (
                  INSERT INTO history (run_id, seq, status, at, "by", reason)
                  SELECT id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM history WHERE run_id = claimed.id),
                    'processing', started_at, worker, 'attempt ' || attempt || ' of ' || max_attempts
                  FROM claimed)
                SELECT {_COLS} FROM claimed"""
            args = {"queue": queue, "worker": nul_safe(claimant.name), "machine": nul_safe(claimant.machine),
                    "pid": claimant.pid, "ctime": claimant.ctime}
            # not redone on a lost connection: the claim may have committed unseen
            row = self._call(functools.partial(_claim_or_none, query=query, args=args), redo=False)
            if row is not None:
                return self.row_to_run(row)
        return None

    def record_processes(self, run_id: int, attempt: int, runner: tuple[int, float] | None,
                         kernel: tuple[int, float] | None) -> None:
        sets, args = process_assignments(runner, kernel, lambda name: f"%({name})s")
        args.update(id=run_id, attempt=attempt)
        if sets:
            self._call(lambda c: c.execute(
                f"UPDATE runs SET {', '.join(sets)} WHERE id = %(id)s AND attempt = %(attempt)s"  # type: ignore[arg-type]
                " AND status = 'processing'", args))

    def heartbeat(self, run_id: int, attempt: int, progress: tuple[int, int] | None,
                  worker: str | None = None) -> Beat:
        done, total = progress if progress is not None else (None, None)
        row = self.fetch_one(
            f"""UPDATE runs SET heartbeat_at = {_NOW}, progress_done = COALESCE(%s, progress_done),
                  progress_total = COALESCE(%s, progress_total)
                WHERE id = %s AND attempt = %s AND status = 'processing'
                  AND (%s::text IS NULL OR worker = %s) RETURNING cancel_requested""",
            (done, total, run_id, attempt, worker, worker))
        if row is None:
            return Beat(own=False)
        asked = row["cancel_requested"]
        return Beat(own=True, cancel=tuple(json.loads(asked)) if asked else None)  # type: ignore[arg-type]

    def request_cancel(self, run_id: int, attempt: int, by: str, reason: str) -> bool:
        row = self.fetch_one("UPDATE runs SET cancel_requested = %s WHERE id = %s AND attempt = %s"
                        " AND status = 'processing' RETURNING id",
                        (json.dumps([nul_safe(by), nul_safe(reason)]), run_id, attempt))
        return row is not None

    # -- the fleet ------------------------------------------------------------------

    def worker_beat(self, info: WorkerInfo) -> None:
        self._call(lambda c: c.execute(
            f"""INSERT INTO workers (name, machine, pid, kind, queues, started_at, heartbeat_at, run_id)
                VALUES (%s, %s, %s, %s, %s, {_NOW}, {_NOW}, %s)
                ON CONFLICT (name) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at,
                  run_id = EXCLUDED.run_id, queues = EXCLUDED.queues""",  # type: ignore[arg-type]
            (nul_safe(info.name), nul_safe(info.machine), info.pid, info.kind, json.dumps(info.queues),
             info.run_id)))

    def worker_gone(self, name: str) -> None:
        self._call(lambda c: c.execute("DELETE FROM workers WHERE name = %s", (nul_safe(name),)))

    def forget_workers(self, before: float) -> int:
        return self._call(lambda c: c.execute("DELETE FROM workers WHERE heartbeat_at < %s", (before,)).rowcount)

    def workers(self) -> builtins.list[WorkerInfo]:
        return [WorkerInfo(name=r["name"], machine=r["machine"], pid=r["pid"], queues=json.loads(r["queues"]),
                           started_at=r["started_at"], heartbeat_at=r["heartbeat_at"], run_id=r["run_id"],
                           kind=r["kind"])
                for r in self.fetch_all("SELECT * FROM workers ORDER BY machine, name")]

    def pause(self, queue: str, by: str) -> None:
        self._call(lambda c: c.execute(
            f"""INSERT INTO paused (queue, at, "by") VALUES (%s, {_NOW}, %s)
                ON CONFLICT (queue) DO UPDATE SET at = EXCLUDED.at, "by" = EXCLUDED."by" """,  # type: ignore[arg-type]
            (queue, nul_safe(by))))

    def resume(self, queue: str | None) -> None:
        with self.write() as tx:
            if queue is None:
                tx.c.execute("DELETE FROM paused")
            else:
                tx.c.execute("DELETE FROM paused WHERE queue = %s", (queue,))
            tx.notify(queue or "*")


def _claim_or_none(conn: psycopg.Connection[dict[str, Any]], query: str, args: dict[str, Any]) -> dict[str, Any] | None:
    """The claimed row; None when the database refuses a second processing run on this
    machine (runs_one_per_machine): a run of this machine is still processing, for reconcile."""
    try:
        return conn.execute(query, args).fetchone()  # type: ignore[arg-type]
    except pgerrors.UniqueViolation:
        return None
