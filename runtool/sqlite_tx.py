"""The SQLite store's transaction: the `queue.Tx` primitives that `lifecycle` builds every
change from, and the history row every status change writes (the claim's too). Each status
change is one guarded update plus its history row, in the store's `BEGIN IMMEDIATE`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .models import Change, NewRun, Run, Status, to_json
from .store_common import change_assignments

if TYPE_CHECKING:
    from .queue import SQLiteStore


class SQLiteTx:
    """One `BEGIN IMMEDIATE` transaction of a `SQLiteStore`: the `queue.Tx` primitives `lifecycle` builds on."""

    def __init__(self, store: SQLiteStore, conn: sqlite3.Connection, now: float) -> None:
        self._store, self._c, self.now = store, conn, now

    def get(self, run_id: int) -> Run | None:
        row = self._c.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        return self._store.row_to_run(row) if row else None

    def insert(self, new: NewRun, by: str, ready: bool) -> int:
        run_id = self._c.execute(
            """INSERT INTO runs (notebook, kind, queue, priority, status, parameters, tags,
                 max_attempts, timeout_s, kernel, output_copy, created_at, not_before, after_ids,
                 after_on, ready, submitted_by)
               VALUES (?, ?, ?, ?, 'waiting', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            (new.notebook, new.kind, new.queue, new.priority, to_json(new.parameters),
             to_json(new.tags), new.max_attempts, new.timeout_s, new.kernel, new.output_copy,
             self.now, new.not_before, to_json(list(new.after)) if new.after else None,
             new.after_on, int(ready), by),
        ).lastrowid
        assert run_id is not None
        self._c.executemany("INSERT OR IGNORE INTO run_parents (parent_id, child_id) VALUES (?, ?)",
                            [(parent, run_id) for parent in new.after])
        add_history(self._c, run_id, Status.WAITING, self.now, by, "submitted")
        return run_id

    def change(self, run_id: int, from_statuses: Sequence[Status], change: Change,
               attempt: int | None = None) -> Run | None:
        assignments, args = change_assignments(change, self.now, lambda name: f":{name}")
        args.update({"id": run_id, "attempt": attempt})
        args.update({f"from{i}": s.value for i, s in enumerate(from_statuses)})
        guard = ", ".join(f":from{i}" for i in range(len(from_statuses)))
        query = f"UPDATE runs SET {', '.join(assignments)} WHERE id = :id AND status IN ({guard})"
        if attempt is not None:
            query += " AND attempt = :attempt"
        row = self._c.execute(query + " RETURNING *", args).fetchone()
        if row is None:
            return None
        add_history(self._c, run_id, change.to, self.now, change.by, change.reason, change.error)
        return self._store.row_to_run(row)

    def parents(self, run_id: int) -> list[tuple[int, Status | None]]:
        rows = self._c.execute(
            """SELECT value, (SELECT status FROM runs WHERE id = value)
               FROM json_each((SELECT after_ids FROM runs WHERE id = ?))""",
            (run_id,),
        ).fetchall()
        return [(r[0], Status(r[1]) if r[1] else None) for r in rows]

    def awaiting_children(self, parent_id: int) -> list[int]:
        rows = self._c.execute(
            """SELECT r.id FROM run_parents p JOIN runs r ON r.id = p.child_id
               WHERE p.parent_id = ? AND r.status = 'waiting' AND r.ready = 0 ORDER BY r.id""",
            (parent_id,),
        ).fetchall()
        return [r[0] for r in rows]

    def set_ready(self, run_id: int) -> None:
        self._c.execute("UPDATE runs SET ready = 1 WHERE id = ? AND status = 'waiting'", (run_id,))

    def set_tags(self, run_id: int, tags: dict[str, str]) -> None:
        self._c.execute("UPDATE runs SET tags = ? WHERE id = ?", (to_json(tags), run_id))

    def remove(self, run_id: int, status: Status) -> bool:
        row = self._c.execute("DELETE FROM runs WHERE id = ? AND status = ? RETURNING after_ids",
                              (run_id, status.value)).fetchone()
        if row is None:
            return False
        self._c.execute("DELETE FROM history WHERE run_id = ?", (run_id,))
        parents = json.loads(row[0]) if row[0] else []
        self._c.executemany("DELETE FROM run_parents WHERE parent_id = ? AND child_id = ?",
                            [(p, run_id) for p in parents])
        return True


def add_history(c: sqlite3.Connection, run_id: int, status: Status, at: float, by: str, reason: str,
                 error: Any = None) -> None:
    c.execute(
        """INSERT INTO history (run_id, seq, status, at, by, reason, error) VALUES
           (:id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM history WHERE run_id = :id),
            :status, :at, :by, :reason, :error)""",
        {"id": run_id, "status": status.value, "at": at, "by": by, "reason": reason,
         "error": to_json(error) if error else None},
    )
