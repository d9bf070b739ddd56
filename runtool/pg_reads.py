"""The PostgreSQL store's reads for listing: the runs matching a filter (newest first, or by
a metric), how many match, the counts per label, and the kinds and queues to filter by.

A store module: plain functions over a `PostgresStore`, each statement read through its
`fetch_one` / `fetch_all` (redone once on a lost connection).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from . import words
from .models import LABELS, Run, RunFilter, Status
from .pg_schema import RUN_COLUMNS as _COLS
from .pg_tx import nul_safe

if TYPE_CHECKING:
    from .pg_store import PostgresStore


def list_runs(store: PostgresStore, where: RunFilter, limit: int, offset: int) -> list[Run]:
    pinned = run_named_by(store, where)
    if pinned is not None:  # the run whose id was searched for comes first
        if offset == 0:
            return [pinned, *list_runs(store, replace(where, exclude=pinned.id), limit - 1, 0)] if limit else []
        return list_runs(store, replace(where, exclude=pinned.id), limit, offset - 1)
    if where.sort_metric is not None and where.kind and not (where.text and where.text.strip()):
        return _list_by_metric(store, where, limit, offset)
    clause, args = filters(where)
    order = "id DESC"
    if where.sort_metric is not None:
        # Without a kind, or with a text search (which narrows the runs first), the
        # matching runs are read and sorted (as on SQLite); a kind alone walks run_metrics.
        # The name is a bound value and only JSON numbers are cast; json, not jsonb, which
        # refuses a \u0000 escape that a stored name may hold.
        key = "CASE WHEN json_typeof(metrics::json -> %s) = 'number' THEN (metrics::json ->> %s)::numeric END"
        name = nul_safe(where.sort_metric)
        args += [name, name]
        order = f"{key} {'DESC' if where.descending else 'ASC'} NULLS LAST, id DESC"
    rows = store.fetch_all(f"SELECT {_COLS} FROM runs {clause} ORDER BY {order} LIMIT %s OFFSET %s",
                           (*args, limit, offset))
    return [store.row_to_run(r) for r in rows]


def _list_by_metric(store: PostgresStore, where: RunFilter, limit: int, offset: int) -> list[Run]:
    """A kind's runs by a metric, walking run_metrics' indexes: the runs having it in value
    order (ties newest first), then the kind's runs without it, newest first; one
    statement, so the offset into the second part is exact."""
    clause, args = filters(replace(where, kind=None, sort_metric=None), "r.")
    extra = clause.replace("WHERE ", "AND ", 1)
    order = "m.value DESC, m.run_id DESC" if where.descending else "m.value ASC, m.run_id DESC"
    name, kind = nul_safe(where.sort_metric), nul_safe(where.kind)
    # Ids only, in the index alone unless a queue or an excluded run asks for the run
    # (statuses are tested on run_metrics' own copy, in its indexes).
    on_runs, on_args = filters(replace(where, kind=None, sort_metric=None, statuses=()), "r.")
    having = ("FROM run_metrics m" + (" JOIN runs r ON r.id = m.run_id" if on_runs else "")
              + " WHERE m.kind = %s AND m.name = %s" + (" AND m.status = ANY(%s)" if where.statuses else "")
              + on_runs.replace("WHERE ", " AND ", 1))
    having_args = [kind, name, *([[s.value for s in where.statuses]] if where.statuses else []), *on_args]
    without = (f"FROM runs r WHERE r.kind = %s {extra} AND NOT EXISTS"
               " (SELECT 1 FROM run_metrics m WHERE m.run_id = r.id AND m.name = %s)")
    # The runs without the metric are tested one by one: without other filters, a page in
    # their older half is read from the oldest end (both counts are of an index alone).
    reversible = not clause
    sizes = ("(SELECT count(*) FROM runs WHERE kind = %s) - (SELECT count(*) FROM run_metrics"
             " WHERE kind = %s AND name = %s)") if reversible else "0"
    cols = ", ".join(f"r.{c}" for c in _COLS.split(", "))
    # The first part's ids in index order, as far as the page; the second part is asked
    # only for what the first did not fill (`want`), past those the first has (`skip`,
    # counted only when the page lies wholly beyond them). The page's rows are read last
    # and put in order: part, then position.
    query = f"""WITH having_it AS MATERIALIZED (
                  SELECT m.run_id AS id, row_number() OVER (ORDER BY {order}) AS pos {having}
                  ORDER BY {order} LIMIT %s OFFSET %s),
                past AS MATERIALIZED (
                  SELECT GREATEST(0, %s - f.n) AS want,
                         CASE WHEN f.n > 0 OR %s = 0 THEN 0
                              ELSE GREATEST(0, %s - (SELECT count(*) {having})) END AS skip
                  FROM (SELECT count(*) AS n FROM having_it) f),
                s AS MATERIALIZED (
                  SELECT want, skip, n2 - skip AS ends, {'skip > 0 AND n2 - skip <= skip' if reversible else 'false'}
                    AS backwards
                  FROM (SELECT p.*, CASE WHEN p.skip > 0 THEN {sizes} ELSE 0 END AS n2 FROM past p) x),
                page AS (
                  SELECT 0 AS part, id, pos FROM having_it
                  UNION ALL
                  (SELECT 1, r.id, -r.id {without} ORDER BY r.id DESC
                   LIMIT (SELECT CASE WHEN backwards THEN 0 ELSE want END FROM s) OFFSET (SELECT skip FROM s))
                  UNION ALL
                  (SELECT 1, r.id, -r.id {without} ORDER BY r.id ASC
                   LIMIT (SELECT CASE WHEN backwards THEN GREATEST(0, ends - GREATEST(0, ends - want)) ELSE 0 END FROM s)
                   OFFSET (SELECT CASE WHEN backwards THEN GREATEST(0, ends - want) ELSE 0 END FROM s)))
                SELECT {cols} FROM page JOIN runs r ON r.id = page.id ORDER BY page.part, page.pos"""
    rows = store.fetch_all(query, (*having_args, limit, offset,  # having_it
                                   limit, offset, offset, *having_args,  # past
                                   *([kind, kind, name] if reversible else []),  # s
                                   kind, *args, name, kind, *args, name))  # the two ways through the runs without
    return [store.row_to_run(r) for r in rows]


def count(store: PostgresStore, where: RunFilter, cap: int | None = None) -> int:
    pinned = run_named_by(store, where)
    if pinned is not None:
        return 1 + count(store, replace(where, exclude=pinned.id), None if cap is None else cap - 1)
    clause, args = filters(where)
    query = f"SELECT 1 FROM runs {clause}"
    if cap is not None:
        query, args = f"{query} LIMIT %s", [*args, cap + 1]
    row = store.fetch_one(f"SELECT COUNT(*) AS n FROM ({query}) AS matching", args)
    return int(row["n"]) if row else 0


def run_named_by(store: PostgresStore, where: RunFilter) -> Run | None:
    """The run whose id the search text is, if it passes the other filters."""
    text = (where.text or "").strip()
    if not text.isascii() or not text.isdigit() or where.exclude is not None or len(text) > 18:
        return None
    clause, args = filters(replace(where, text=None))
    row = store.fetch_one(f"SELECT {_COLS} FROM runs {clause} {'AND' if clause else 'WHERE'} id = %s", [*args, int(text)])
    return store.row_to_run(row) if row else None


def counts(store: PostgresStore, now: float) -> dict[str, int]:
    result = dict.fromkeys(LABELS, 0)
    for row in store.fetch_all("SELECT status, COUNT(*) AS n FROM runs GROUP BY status"):
        if row["status"] != Status.WAITING:
            result[row["status"]] = row["n"]
    waiting = store.fetch_one(
        """SELECT
             COUNT(*) FILTER (WHERE ready AND attempt = 0 AND (not_before IS NULL OR not_before <= %(now)s)) AS w,
             COUNT(*) FILTER (WHERE ready AND attempt = 0 AND not_before > %(now)s) AS s,
             COUNT(*) FILTER (WHERE NOT ready) AS a,
             COUNT(*) FILTER (WHERE ready AND attempt > 0) AS r
           FROM runs WHERE status = 'waiting'""",
        {"now": now},
    )
    assert waiting is not None
    result["waiting"], result["scheduled"], result["awaiting"], result["retrying"] = (
        waiting["w"], waiting["s"], waiting["a"], waiting["r"])
    return result


def kinds_and_queues(store: PostgresStore) -> tuple[list[str], list[str]]:
    # a loose index scan: one index probe per distinct value instead of reading every run
    def distinct(column: str) -> list[str]:
        rows = store.fetch_all(
            f"""WITH RECURSIVE d AS (
                  (SELECT {column} AS v FROM runs ORDER BY {column} LIMIT 1)
                  UNION ALL
                  SELECT (SELECT {column} FROM runs WHERE {column} > d.v ORDER BY {column} LIMIT 1)
                  FROM d WHERE d.v IS NOT NULL)
                SELECT v FROM d WHERE v IS NOT NULL ORDER BY v COLLATE "C" """)
        return [r["v"] for r in rows]
    return distinct("kind"), distinct("queue")


def filters(where: RunFilter, r: str = "") -> tuple[str, list[Any]]:
    """The WHERE clause of `where` (sort aside) on runs, its columns prefixed with `r`."""
    clauses: list[str] = []
    args: list[Any] = []
    if where.text is not None and where.text.strip():
        query = words.tsquery(nul_safe(where.text) or "")
        if query is None:
            clauses.append("false")  # no word: matches nothing, as on SQLite
        else:
            clauses.append(f"{r}id IN (SELECT run_id FROM run_words WHERE words @@ %s::tsquery)")
            args.append(query)
    if where.statuses:
        clauses.append(f"{r}status = ANY(%s)")
        args.append([s.value for s in where.statuses])
    if where.queue:
        clauses.append(f"{r}queue = %s")
        args.append(nul_safe(where.queue))  # no stored name holds NUL: it matches nothing, as on SQLite
    if where.kind:
        clauses.append(f"{r}kind = %s")
        args.append(nul_safe(where.kind))
    if where.exclude is not None:
        clauses.append(f"{r}id <> %s")
        args.append(where.exclude)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", args
