"""A home with a million runs, built in SQL in seconds (through the API it would take hours).

The mix is the dashboard benchmark's: 90% succeeded, 6% failed, 3% cancelled, 1% waiting or
scheduled; three kinds, four queues, a history of two or three rows per run.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

_RUNS = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count)
INSERT INTO runs (id, notebook, kind, queue, priority, status, parameters, tags, attempt,
                  max_attempts, kernel, created_at, not_before, started_at, finished_at,
                  heartbeat_at, ready, submitted_by, worker, machine, error, metrics)
SELECT i,
       '/data/notebooks/' || k.kind || '.ipynb', k.kind,
       CASE WHEN i % 2 THEN k.kind ELSE 'default' END, 0,
       CASE WHEN i > :count - :waiting THEN 'waiting'
            WHEN i % 100 < 3 THEN 'cancelled' WHEN i % 100 < 9 THEN 'failed' ELSE 'succeeded' END,
       '{"score_threshold": 0.5, "scene_seed": ' || i || ', "n_scenes": 8}',
       '{"detectionRunId": "d' || printf('%07d', i) || '"}',
       CASE WHEN i > :count - :waiting OR i % 100 < 3 THEN 0 ELSE 1 END, 1, 'python3',
       :t0 + i * 0.5,
       CASE WHEN i > :count - :waiting AND i % 2 THEN :t0 + :count * 0.5 + 86400 END,
       CASE WHEN i <= :count - :waiting AND i % 100 >= 3 THEN :t0 + i * 0.5 + 0.1 END,
       CASE WHEN i <= :count - :waiting THEN :t0 + i * 0.5 + 0.4 END,
       CASE WHEN i <= :count - :waiting AND i % 100 >= 3 THEN :t0 + i * 0.5 + 0.1 END,
       1, 'bench', CASE WHEN i <= :count - :waiting AND i % 100 >= 3 THEN 'gpu-01:77' END,
       CASE WHEN i <= :count - :waiting AND i % 100 >= 3 THEN 'gpu-01' END,
       CASE WHEN i <= :count - :waiting AND i % 100 BETWEEN 3 AND 8 THEN
         '{"type": "ValueError", "message": "score_threshold must be in [0, 1]", "cell": 3, "traceback": ""}' END,
       CASE WHEN i <= :count - :waiting AND i % 100 >= 9 THEN
         '{"precision": ' || (0.8 + (i % 17) / 100.0) || ', "recall": ' || (0.7 + (i % 23) / 100.0) || '}'
         ELSE '{}' END
FROM n JOIN (SELECT 0 AS m, 'detection' AS kind UNION ALL SELECT 1, 'training' UNION ALL SELECT 2, 'export') k
  ON k.m = n.i % 3
"""
_HISTORY = """
INSERT INTO history (run_id, seq, status, at, by, reason, error)
SELECT id, 1, 'waiting', created_at, 'bench', 'submitted', NULL FROM runs;
INSERT INTO history (run_id, seq, status, at, by, reason, error)
SELECT id, 2, 'processing', started_at, worker, 'attempt 1 of 1', NULL FROM runs WHERE started_at IS NOT NULL;
INSERT INTO history (run_id, seq, status, at, by, reason, error)
SELECT id, CASE WHEN started_at IS NULL THEN 2 ELSE 3 END, status, finished_at, 'bench', 'done', error
FROM runs WHERE finished_at IS NOT NULL;
"""


def build(home: Path, count: int = 1_000_000, waiting: int = 1_000) -> float:
    """Fill the (new, empty) home's runtool.db with `count` runs; returns seconds taken."""
    from runtool import RunQueue

    RunQueue(home, user="bench").close()  # creates the schema as runtool does
    started = time.perf_counter()
    conn = sqlite3.connect(home / "runtool.db", isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    conn.execute(_RUNS, {"count": count, "waiting": waiting, "t0": time.time() - count})
    conn.executescript(_HISTORY)  # executescript commits the open transaction first
    conn.execute("INSERT OR REPLACE INTO sqlite_sequence (name, seq) VALUES ('runs', ?)", (count,))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - started


if __name__ == "__main__":
    import sys

    target = Path(sys.argv[1])
    print(f"built {target} in {build(target):.1f} s")
