"""The PostgreSQL store's transaction: the `queue.Tx` primitives that `lifecycle` builds
every change from. Each status change is one statement: the guarded update and its history
row together. Changes that may make a run runnable notify idle workers (`pg_schema.CHANNEL`)
in the same transaction, so the notification leaves only if the change commits."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import psycopg

from . import pg_schema, words
from .pg_schema import RUN_COLUMNS as _COLS
from .models import Change, NewRun, Run, Status, to_json
from .store_common import change_assignments

if TYPE_CHECKING:
    from .pg_store import PostgresStore

_HISTORY = """INSERT INTO history (run_id, seq, status, at, "by", reason, error) VALUES
    (%(id)s, (SELECT COALESCE(MAX(seq), 0) + 1 FROM history WHERE run_id = %(id)s),
     %(status)s, %(at)s, %(by)s, %(reason)s, %(error)s)"""


def nul_safe(value: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL, which SQLite stores: keep it visible instead."""
    return value.replace("\x00", "\\x00") if value is not None and "\x00" in value else value


class PostgresTx:
    """One transaction of a `PostgresStore`: the `queue.Tx` primitives `lifecycle` builds on."""

    def __init__(self, store: PostgresStore, conn: psycopg.Connection[dict[str, Any]], now: float) -> None:
        self._store, self.c, self.now = store, conn, now

    def notify(self, queue: str) -> None:
        """Wake idle workers when this transaction commits (the server holds it until then)."""
        self.c.execute("SELECT pg_notify(%s, %s)", (pg_schema.CHANNEL, queue))

    def get(self, run_id: int) -> Run | None:
        row = self.c.execute(f"SELECT {_COLS} FROM runs WHERE id = %s", (run_id,)).fetchone()
        return self._store.row_to_run(row) if row else None

    def insert(self, new: NewRun, by: str, ready: bool) -> int:
        parameters, tags = to_json(new.parameters), to_json(new.tags)
        row = self.c.execute(
            """INSERT INTO runs (notebook, kind, queue, priority, status, parameters, tags,
                 max_attempts, timeout_s, kernel, output_copy, created_at, not_before, after_ids,
                 after_on, ready, submitted_by)
               VALUES (%s, %s, %s, %s, 'waiting', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               RETURNING id""",
            (nul_safe(new.notebook), new.kind, new.queue, new.priority, parameters,
             tags, new.max_attempts, new.timeout_s, nul_safe(new.kernel), nul_safe(new.output_copy),
             self.now, new.not_before, list(new.after) if new.after else None,
             new.after_on, ready, nul_safe(by)),
        ).fetchone()
        assert row is not None
        run_id = int(row["id"])
        self.c.execute("INSERT INTO run_words (run_id, words) VALUES (%s, %s::tsvector)",
                       (run_id, words_of(new.notebook, parameters, tags, new.kind, new.queue)))
        if new.after:
            self.c.execute("INSERT INTO run_parents (parent_id, child_id) SELECT unnest(%s::bigint[]), %s"
                           " ON CONFLICT DO NOTHING", (list(new.after), run_id))
        self._history(run_id, Status.WAITING, by, "submitted")
        if ready:
            self.notify(new.queue)
        return run_id

    def _history(self, run_id: int, status: Status, by: str, reason: str, error: Any = None) -> None:
        self.c.execute(_HISTORY, {"id": run_id, "status": status.value, "at": self.now, "by": nul_safe(by),
                                  "reason": nul_safe(reason), "error": to_json(error) if error else None})

    def change(self, run_id: int, from_statuses: Sequence[Status], change: Change,
               attempt: int | None = None) -> Run | None:
        assignments, args = change_assignments(change, self.now, lambda name: f"%({name})s")
        args.update({"id": run_id, "attempt": attempt, "from": [s.value for s in from_statuses]})
        query = f"UPDATE runs SET {', '.join(assignments)} WHERE id = %(id)s AND status = ANY(%(from)s)"
        if attempt is not None:
            query += " AND attempt = %(attempt)s"
        # the guarded update and its history row in one statement: both or neither
        args.update({"at": self.now, "by": nul_safe(change.by), "reason": nul_safe(change.reason),
                     "error": to_json(change.error) if change.error else None, "status": change.to.value})
        row = self.c.execute(  # type: ignore[call-overload]
            f"""WITH changed AS ({query} RETURNING {_COLS}),
                  noted AS (INSERT INTO history (run_id, seq, status, at, "by", reason, error)
                    SELECT id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM history WHERE run_id = changed.id),
                      %(status)s, %(at)s, %(by)s, %(reason)s, %(error)s FROM changed)
                SELECT {_COLS} FROM changed""", args).fetchone()
        if row is None:
            return None
        if change.to is Status.WAITING and change.ready:
            self.notify(row["queue"])
        return self._store.row_to_run(row)

    def parents(self, run_id: int) -> builtins.list[tuple[int, Status | None]]:
        rows = self.c.execute(
            """SELECT p.parent, r.status FROM unnest((SELECT after_ids FROM runs WHERE id = %s))
                 WITH ORDINALITY AS p(parent, n) LEFT JOIN runs r ON r.id = p.parent ORDER BY p.n""",
            (run_id,),
        ).fetchall()
        return [(r["parent"], Status(r["status"]) if r["status"] else None) for r in rows]

    def awaiting_children(self, parent_id: int) -> builtins.list[int]:
        rows = self.c.execute(
            """SELECT r.id FROM run_parents p JOIN runs r ON r.id = p.child_id
               WHERE p.parent_id = %s AND r.status = 'waiting' AND NOT r.ready ORDER BY r.id""",
            (parent_id,),
        ).fetchall()
        return [r["id"] for r in rows]

    def set_ready(self, run_id: int) -> None:
        row = self.c.execute("UPDATE runs SET ready = true WHERE id = %s AND status = 'waiting' RETURNING queue",
                             (run_id,)).fetchone()
        if row is not None:
            self.notify(row["queue"])

    def set_tags(self, run_id: int, tags: dict[str, str]) -> None:
        text = to_json(tags)
        row = self.c.execute("UPDATE runs SET tags = %s WHERE id = %s RETURNING notebook, parameters, kind, queue",
                             (text, run_id)).fetchone()
        if row is not None:  # the search's words include the tags
            self.c.execute("UPDATE run_words SET words = %s::tsvector WHERE run_id = %s",
                           (words_of(row["notebook"], row["parameters"], text, row["kind"], row["queue"]), run_id))

    def remove(self, run_id: int, status: Status) -> bool:
        row = self.c.execute("DELETE FROM runs WHERE id = %s AND status = %s RETURNING after_ids",
                             (run_id, status.value)).fetchone()
        if row is None:
            return False
        self.c.execute("DELETE FROM history WHERE run_id = %s", (run_id,))
        self.c.execute("DELETE FROM run_words WHERE run_id = %s", (run_id,))
        self.c.execute("DELETE FROM run_parents WHERE child_id = %s", (run_id,))
        return True


def words_of(notebook: str, parameters: str, tags: str, kind: str, queue: str) -> str:
    """The run's words for the text search, as SQLite's FTS index holds them."""
    return words.tsvector([notebook, parameters, tags, kind, queue])
