"""The SQLite store's reads for listing: the runs matching a filter (newest first, or by a
metric), how many match, the counts per label, and the kinds and queues to filter by.

A store module: plain functions over `SQLiteStore`'s connection, which wraps each call in
its error handling (`SQLiteStore._errors`); `to_run` makes a `Run` of a row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .models import LABELS, Run, RunFilter, Status

ToRun = Callable[[sqlite3.Row], Run]
"""`SQLiteStore.row_to_run`."""


def list_runs(conn: sqlite3.Connection, to_run: ToRun, where: RunFilter, limit: int, offset: int) -> list[Run]:
    pinned = run_named_by(conn, to_run, where)
    if pinned is not None:  # the run whose id was searched for comes first
        if offset == 0:
            return [pinned, *list_runs(conn, to_run, replace(where, exclude=pinned.id), limit - 1, 0)] if limit else []
        return list_runs(conn, to_run, replace(where, exclude=pinned.id), limit, offset - 1)
    if where.sort_metric is not None and where.kind and not (where.text and where.text.strip()):
        return _list_by_metric(conn, to_run, where, limit, offset)
    query, args = select(where, "r.*")
    rows = conn.execute(f"{query} LIMIT ? OFFSET ?", (*args, limit, offset)).fetchall()
    return [to_run(r) for r in rows]


def _list_by_metric(conn: sqlite3.Connection, to_run: ToRun, where: RunFilter, limit: int, offset: int) -> list[Run]:
    """A kind's runs by a metric, walking run_metrics' index: the runs having it in value
    order (ties newest first), then the kind's runs without it, newest first. The two
    parts are read in one read transaction, so the offset into the second is exact."""
    assert where.sort_metric is not None and where.kind
    clauses, args = filters(replace(where, kind=None, sort_metric=None))
    extra = "".join(f" AND {c}" for c in clauses)
    # The primary key walked backwards gives highest first, run_metrics_ascending walked
    # forwards lowest first; ties newest first either way. Ids only: with no filter but
    # statuses (copied into run_metrics) the walk never leaves the index; a queue (CROSS
    # JOIN: the index drives) is tested in its own covering index, not in the run's row.
    order = "m.value DESC, m.run_id DESC" if where.descending else "m.value ASC, m.run_id DESC"
    on_runs, on_args = filters(replace(where, kind=None, sort_metric=None, statuses=()))
    having = "FROM run_metrics m"
    if on_runs:
        having += " CROSS JOIN runs r ON r.id = m.run_id"
    having += " WHERE m.kind = ? AND m.name = ?"
    key = [where.kind, where.sort_metric]
    if where.statuses:
        having += f" AND m.status IN ({','.join('?' * len(where.statuses))})"
        key += [s.value for s in where.statuses]
    having += "".join(f" AND {c}" for c in on_runs)
    key += on_args
    began = not conn.in_transaction  # inside a write, its transaction serves
    if began:
        conn.execute("BEGIN")
    try:
        ids = [r[0] for r in conn.execute(f"SELECT m.run_id {having} ORDER BY {order} LIMIT ? OFFSET ?",
                                           (*key, limit, offset))]
        if len(ids) < limit:  # the page reaches the runs without the metric
            # how many have it: known from this page unless the offset is past them all
            before = offset + len(ids) if ids or not offset else int(
                conn.execute(f"SELECT COUNT(*) {having}", key).fetchone()[0])
            ids += _without(conn, where, extra, args, limit - len(ids), max(0, offset - before),
                            None if clauses else before)
        rows = {r["id"]: r for r in conn.execute(
            f"SELECT * FROM runs WHERE id IN ({','.join('?' * len(ids))})", ids)}
    finally:
        if began and conn.in_transaction:
            conn.execute("COMMIT")
    return [to_run(rows[i]) for i in ids]


def _without(conn: sqlite3.Connection, where: RunFilter, extra: str, args: list[Any], limit: int, offset: int,
             having: int | None) -> list[int]:
    """Ids of the kind's runs without the metric, newest first, from `offset`. Each is
    tested in its JSON, so with `having` (how many runs have it; no other filter) a page
    in the older half is read from the oldest end, and the last pages cost as the first."""
    query = (f"SELECT r.id FROM runs r WHERE r.kind = ?{extra} AND NOT EXISTS (SELECT 1 FROM json_each(r.metrics)"
             f" WHERE key = ? AND type IN ('integer', 'real')) ORDER BY r.id {{}} LIMIT ? OFFSET ?")
    if offset and having is not None:
        runs = int(conn.execute("SELECT COUNT(*) FROM runs WHERE kind = ?", (where.kind,)).fetchone()[0])
        end = runs - having - offset  # the page ends this many runs from the oldest
        if end <= runs - having - end:
            start = max(0, end - limit)
            return [r[0] for r in conn.execute(
                query.format("ASC"), (where.kind, *args, where.sort_metric, max(0, end - start), start))][::-1]
    return [r[0] for r in conn.execute(
        query.format("DESC"), (where.kind, *args, where.sort_metric, limit, offset))]


def count(conn: sqlite3.Connection, to_run: ToRun, where: RunFilter, cap: int | None = None) -> int:
    if not (where.queue or where.kind or where.text or where.exclude):
        rows = conn.execute("SELECT status, n FROM run_counts").fetchall()  # the counts the triggers keep
        return sum(n for status, n in rows if not where.statuses or status in where.statuses)
    pinned = run_named_by(conn, to_run, where)
    if pinned is not None:
        return 1 + count(conn, to_run, replace(where, exclude=pinned.id), None if cap is None else cap - 1)
    query, args = select(where, "1", ordered=False)
    if cap is not None:
        query, args = f"{query} LIMIT ?", [*args, cap + 1]
    return int(conn.execute(f"SELECT COUNT(*) FROM ({query})", args).fetchone()[0])


def run_named_by(conn: sqlite3.Connection, to_run: ToRun, where: RunFilter) -> Run | None:
    """The run whose id the search text is, if it passes the other filters."""
    text = (where.text or "").strip()
    if not text.isascii() or not text.isdigit() or where.exclude is not None or len(text) > 18:
        return None
    query, args = select(replace(where, text=None), "r.*", ordered=False)
    row = conn.execute(f"{query} AND r.id = ?", (*args, int(text))).fetchone()
    return to_run(row) if row else None


def counts(conn: sqlite3.Connection, now: float) -> dict[str, int]:
    result = dict.fromkeys(LABELS, 0)
    for status, n in conn.execute("SELECT status, n FROM run_counts"):
        if status != Status.WAITING:
            result[status] = n
    row = conn.execute(
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


def kinds_and_queues(conn: sqlite3.Connection) -> tuple[list[str], list[str]]:
    # A skip-scan of each index: one seek per distinct value, not a walk over every run.
    distinct = """WITH RECURSIVE v(x) AS (
                    SELECT MIN({0}) FROM runs
                    UNION ALL SELECT (SELECT MIN({0}) FROM runs WHERE {0} > v.x) FROM v WHERE v.x IS NOT NULL)
                  SELECT x FROM v WHERE x IS NOT NULL"""
    kinds = [r[0] for r in conn.execute(distinct.format("kind"))]
    queues = [r[0] for r in conn.execute(distinct.format("queue"))]
    return kinds, queues


def select(where: RunFilter, columns: str, ordered: bool = True) -> tuple[str, list[Any]]:
    """A SELECT of `columns` from runs `r` matching `where`, newest first if `ordered`.

    A text search walks the FTS index newest first and stops at the page, so a common word
    costs little more than a rare one.
    """
    clauses: list[str] = []
    args: list[Any] = []
    source = "runs r"
    order = "r.id DESC"
    if where.text is not None and where.text.strip():
        # CROSS JOIN: the index drives, whatever the planner guesses (runs first would ask
        # the index once per run).
        source = "runs_fts f CROSS JOIN runs r ON r.id = f.rowid"
        clauses.append("runs_fts MATCH ?")
        narrowed = [f'{column} : "{value}"' for column, value in (("kind", where.kind), ("queue", where.queue))
                    if value and '"' not in value]  # names are checked, but never trust a quote
        args.append(" AND ".join([fts_query(where.text), *narrowed]))
        order = "f.rowid DESC"
    more, more_args = filters(where)
    clauses += more
    args += more_args
    query = f"SELECT {columns} FROM {source} WHERE " + (" AND ".join(clauses) or "1")
    if ordered and where.sort_metric is not None:
        # Without a kind, or with a text search (which narrows the runs first), the runs
        # matching the filters are read and sorted; a kind alone walks run_metrics
        # (`_list_by_metric`). json_each, not json_extract: a JSON path cannot name a
        # key holding a double quote; the name is compared as a bound value, never spliced
        # into SQL or a path.
        key = "(SELECT value FROM json_each(r.metrics) WHERE key = ? AND type IN ('integer', 'real'))"
        args.append(where.sort_metric)
        order = f"{key} {'DESC' if where.descending else 'ASC'} NULLS LAST, r.id DESC"
    return (f"{query} ORDER BY {order}" if ordered else query), args


def filters(where: RunFilter) -> tuple[list[str], list[Any]]:
    """The clauses on runs `r` of `where`'s statuses, queue, kind and excluded run."""
    clauses: list[str] = []
    args: list[Any] = []
    if where.statuses:
        clauses.append(f"r.status IN ({','.join('?' * len(where.statuses))})")
        args.extend(s.value for s in where.statuses)
    if where.queue:
        clauses.append("r.queue = ?")
        args.append(where.queue)
    if where.kind:
        clauses.append("r.kind = ?")
        args.append(where.kind)
    if where.exclude is not None:
        clauses.append("r.id != ?")
        args.append(where.exclude)
    return clauses, args


def fts_query(text: str) -> str:
    """The FTS5 query for a search box's text: every word, in any column; `word*` a prefix.

    Words are quoted (FTS5 syntax in the text means nothing) and split as the index splits
    them: `score_threshold 0.5` finds `"score_threshold": 0.5`. A prefix is asked for, not
    implied: a short prefix of a word in every run would make every search read them all.
    Text with no word matches nothing.
    """
    terms = []
    for word in text.split():
        prefix = word.endswith("*")
        word = word.rstrip("*")
        if any(ch.isalnum() for ch in word):
            terms.append('"' + word.replace('"', '""') + '"' + ("*" if prefix else ""))
    return " AND ".join(terms) or '""'
