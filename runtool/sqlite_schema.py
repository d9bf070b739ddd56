"""The SQLite store's schema, and the migrations that bring an older `runtool.db` up to it.

A new database gets SCHEMA at once. An older one is migrated step by step, each step in
one transaction with its version, by sqlite-utils (imported only then: it costs ~0.3 s).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from .errors import StoreUnavailable

SCHEMA_VERSION = 4
_TABLES = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    notebook TEXT NOT NULL, kind TEXT NOT NULL, queue TEXT NOT NULL,
    priority INTEGER NOT NULL, status TEXT NOT NULL,
    parameters TEXT NOT NULL, tags TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL,
    timeout_s REAL, kernel TEXT, output_copy TEXT,
    created_at REAL NOT NULL, not_before REAL, started_at REAL, finished_at REAL,
    heartbeat_at REAL, after_ids TEXT, after_on TEXT, ready INTEGER NOT NULL DEFAULT 1,
    submitted_by TEXT NOT NULL, worker TEXT, machine TEXT, worker_pid INTEGER, worker_ctime REAL,
    runner_pid INTEGER, runner_ctime REAL, kernel_pid INTEGER, kernel_ctime REAL,
    progress_done INTEGER, progress_total INTEGER, error TEXT, metrics TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE history (
    run_id INTEGER NOT NULL, seq INTEGER NOT NULL, status TEXT NOT NULL,
    at REAL NOT NULL, by TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', error TEXT,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE paused (queue TEXT PRIMARY KEY, at REAL NOT NULL, by TEXT NOT NULL);
"""
#: The workers and drains serving the home (`runtool workers`), each renewing its row.
_WORKERS = """
CREATE TABLE workers (
    name TEXT PRIMARY KEY, machine TEXT NOT NULL, pid INTEGER NOT NULL, kind TEXT NOT NULL,
    queues TEXT NOT NULL, started_at REAL NOT NULL, heartbeat_at REAL NOT NULL, run_id INTEGER
)
"""
_RUN_PARENTS = """
CREATE TABLE run_parents (
    parent_id INTEGER NOT NULL, child_id INTEGER NOT NULL, PRIMARY KEY (parent_id, child_id)
) WITHOUT ROWID
"""
#: The claim walks runs_claim (or runs_claim_queue), partial indexes over waiting runs only.
_INDEXES = """
CREATE INDEX runs_claim ON runs(priority DESC, id) WHERE status = 'waiting';
CREATE INDEX runs_claim_queue ON runs(queue, priority DESC, id) WHERE status = 'waiting';
CREATE INDEX runs_status ON runs(status, id);
CREATE INDEX runs_kind ON runs(kind, id);
CREATE INDEX runs_queue ON runs(queue, id);
"""
#: Runs per status, kept by triggers: the dashboard's counts cost the same at a million runs.
#: Text search: an FTS5 index over the notebook, parameters, tags, kind and queue (written once,
#: at insert; claims and status changes never touch it). Kind and queue are there so that a
#: search filtered by them is one intersection in the index.
_DERIVED = """
CREATE TABLE run_counts (status TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
INSERT INTO run_counts VALUES ('waiting', 0), ('processing', 0), ('succeeded', 0), ('failed', 0), ('cancelled', 0);
CREATE TRIGGER runs_counted AFTER INSERT ON runs BEGIN
    UPDATE run_counts SET n = n + 1 WHERE status = new.status;
END;
CREATE TRIGGER runs_uncounted AFTER DELETE ON runs BEGIN
    UPDATE run_counts SET n = n - 1 WHERE status = old.status;
END;
CREATE TRIGGER runs_recounted AFTER UPDATE OF status ON runs WHEN old.status != new.status BEGIN
    UPDATE run_counts SET n = n + (status = new.status) - (status = old.status)
    WHERE status IN (old.status, new.status);
END;
CREATE VIRTUAL TABLE runs_fts USING fts5(notebook, parameters, tags, kind, queue, content = 'runs', content_rowid = 'id');
CREATE TRIGGER runs_indexed AFTER INSERT ON runs BEGIN
    INSERT INTO runs_fts (rowid, notebook, parameters, tags, kind, queue) VALUES (new.id, new.notebook, new.parameters, new.tags, new.kind, new.queue);
END;
CREATE TRIGGER runs_unindexed AFTER DELETE ON runs BEGIN
    INSERT INTO runs_fts (runs_fts, rowid, notebook, parameters, tags, kind, queue)
    VALUES ('delete', old.id, old.notebook, old.parameters, old.tags, old.kind, old.queue);
END;
CREATE TRIGGER runs_reindexed AFTER UPDATE OF notebook, parameters, tags, kind, queue ON runs BEGIN
    INSERT INTO runs_fts (runs_fts, rowid, notebook, parameters, tags, kind, queue)
    VALUES ('delete', old.id, old.notebook, old.parameters, old.tags, old.kind, old.queue);
    INSERT INTO runs_fts (rowid, notebook, parameters, tags, kind, queue) VALUES (new.id, new.notebook, new.parameters, new.tags, new.kind, new.queue);
END;
"""
#: Numeric metrics apart from the runs, kept by triggers from `runs.metrics` (the record stays
#: the truth): a sort by a metric within a kind walks an index instead of reading every run of
#: the kind. Only JSON numbers count (json_each types integer and real), as in the record's
#: sort. `value` has no type, so it holds exactly what json_each gives (an integer or a real):
#: the delete triggers find each entry again by its whole key (names x values, probes of the
#: key: a row-value IN would walk every entry of the name), and no index on run_id is written.
#: Two orders because ties are newest first whichever way the values go: the primary key walked
#: backwards (highest first), run_metrics_ascending walked forwards (lowest first). The run's
#: status is copied too, so a status filter is tested without leaving the index; it costs
#: claims nothing (a run that may be claimed has recorded no metrics: the trigger's WHEN).
_METRICS = """
CREATE TABLE run_metrics (
    kind TEXT NOT NULL, name TEXT NOT NULL, value NOT NULL, run_id INTEGER NOT NULL, status TEXT NOT NULL,
    PRIMARY KEY (kind, name, value, run_id)
) WITHOUT ROWID;
CREATE INDEX run_metrics_ascending ON run_metrics(kind, name, value, run_id DESC, status);
CREATE TRIGGER runs_measured AFTER INSERT ON runs WHEN new.metrics != '{}' BEGIN
    INSERT OR IGNORE INTO run_metrics (kind, name, value, run_id, status)
    SELECT new.kind, j.key, j.value, new.id, new.status FROM json_each(new.metrics) j WHERE j.type IN ('integer', 'real');
END;
CREATE TRIGGER runs_unmeasured AFTER DELETE ON runs WHEN old.metrics != '{}' BEGIN
    DELETE FROM run_metrics WHERE kind = old.kind AND run_id = old.id
        AND name IN (SELECT key FROM json_each(old.metrics)) AND value IN (SELECT value FROM json_each(old.metrics));
END;
CREATE TRIGGER runs_remeasured AFTER UPDATE OF metrics, kind, status ON runs
WHEN old.metrics IS NOT new.metrics OR old.kind IS NOT new.kind OR (old.status IS NOT new.status AND new.metrics != '{}')
BEGIN
    DELETE FROM run_metrics WHERE kind = old.kind AND run_id = old.id
        AND name IN (SELECT key FROM json_each(old.metrics)) AND value IN (SELECT value FROM json_each(old.metrics));
    INSERT OR IGNORE INTO run_metrics (kind, name, value, run_id, status)
    SELECT new.kind, j.key, j.value, new.id, new.status FROM json_each(new.metrics) j WHERE j.type IN ('integer', 'real');
END;
"""
#: A kind and a status together (the table filtered by both: the pager counts the kind's failed
#: runs without reading each run of the kind).
_KIND_STATUS = "CREATE INDEX runs_kind_status ON runs(kind, status, id);"
#: Fills run_metrics from the runs already stored (the v4 migration; benchmarks/million.py).
BACKFILL_METRICS = """INSERT OR IGNORE INTO run_metrics (kind, name, value, run_id, status)
    SELECT r.kind, j.key, j.value, r.id, r.status FROM runs r, json_each(r.metrics) j
    WHERE r.metrics != '{}' AND j.type IN ('integer', 'real')"""
#: The columns of `runs`, in order (the migrations rebuild the table in this order).
RUN_COLUMNS = (
    "id", "notebook", "kind", "queue", "priority", "status", "parameters", "tags", "attempt",
    "max_attempts", "timeout_s", "kernel", "output_copy", "created_at", "not_before", "started_at",
    "finished_at", "heartbeat_at", "after_ids", "after_on", "ready", "submitted_by", "worker",
    "machine", "worker_pid", "worker_ctime", "runner_pid", "runner_ctime", "kernel_pid",
    "kernel_ctime", "progress_done", "progress_total", "error", "metrics",
)


def _statements(script: str) -> list[str]:
    """The statements of `script`, a trigger's body kept whole."""
    statements, current = [], ""
    for part in script.split(";"):
        current += part + ";"
        if sqlite3.complete_statement(current):
            if current.strip(" \n;"):
                statements.append(current.strip())
            current = ""
    return statements


def _to_v2(db: Any) -> None:
    """Version 1 -> 2: a run may continue several parents (`run_parents`, `after_ids`),
    records the machine it ran on and the metrics it recorded; counts per status and a text
    index are kept by triggers."""
    runs = db["runs"]
    for index in [i.name for i in runs.indexes]:
        db.execute(f"DROP INDEX {index}")
    runs.add_column("after_ids", str)
    runs.add_column("machine", str)
    runs.add_column("metrics", str, not_null_default="{}")
    db.execute("UPDATE runs SET after_ids = json_array(after_id) WHERE after_id IS NOT NULL")
    db.execute(_RUN_PARENTS)
    db.execute("INSERT INTO run_parents SELECT after_id, id FROM runs WHERE after_id IS NOT NULL")
    runs.transform(drop={"after_id"}, column_order=list(RUN_COLUMNS))
    for statement in _statements(_INDEXES + _DERIVED):
        db.execute(statement)
    db.execute("UPDATE run_counts SET n = (SELECT COUNT(*) FROM runs WHERE runs.status = run_counts.status)")
    db.execute("INSERT INTO runs_fts (runs_fts) VALUES ('rebuild')")


def _to_v3(db: Any) -> None:
    """Version 2 -> 3: the workers table (the fleet view)."""
    db.execute(_WORKERS)


def _to_v4(db: Any) -> None:
    """Version 3 -> 4: numeric metrics in run_metrics (kept by triggers), filled from the runs;
    the index of kind and status."""
    for statement in _statements(_METRICS + _KIND_STATUS):
        db.execute(statement)
    db.execute(BACKFILL_METRICS)


#: Version reached -> the step that reaches it from the version before.
MIGRATIONS: dict[int, Callable[[Any], None]] = {2: _to_v2, 3: _to_v3, 4: _to_v4}


def prepare(conn: sqlite3.Connection, where: str) -> None:
    """Create the schema in a new database, or migrate an older one; refuse a newer one.

    `conn` is in autocommit mode; each step is one `BEGIN IMMEDIATE` transaction, so a
    second process opening the same database meanwhile waits, then finds it done.
    """
    while True:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"database {where}: schema version {version} is newer than this runtool"
                f" ({SCHEMA_VERSION}); upgrade runtool")
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("PRAGMA user_version").fetchone()[0] == version:  # not done meanwhile
                _step(conn, version)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def _step(conn: sqlite3.Connection, version: int) -> None:
    if version == 0:
        for statement in _statements(_TABLES + _RUN_PARENTS + ";" + _WORKERS + ";" + _INDEXES + _DERIVED + _METRICS + _KIND_STATUS):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return
    import sqlite_utils

    MIGRATIONS[version + 1](sqlite_utils.Database(conn))
    conn.execute(f"PRAGMA user_version = {version + 1}")
