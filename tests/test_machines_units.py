"""Several machines, the parts that need no server: the lock's place, the stale_after
setting, the fleet and the machine column in the dashboard."""

from __future__ import annotations

import sqlite3

from helpers import ROLES, runtool, write_config
from runtool import RunQueue, dashview
from runtool.cleanup import apply_retention
from runtool.config import GONE_WORKER_KEPT_S, lock_path
from runtool.models import WorkerInfo


def test_fleet_in_the_dashboard_and_the_machine_in_the_table():
    alive_one = WorkerInfo("gpu-01:7", "gpu-01", 7, [], 0.0, 95.0, 12)
    gone_one = WorkerInfo("gpu-02:9", "gpu-02", 9, ["a"], 0.0, 10.0, None, "drain")
    html = dashview.fleet_html([(alive_one, False), (gone_one, True)], 100.0)
    assert "gpu-01:7 worker · run 12 · 5.0s ago</span>" in html
    assert 'rt-worker rt-gone' in html and "gpu-02:9 drain · idle · 1m30s ago · gone" in html
    assert dashview.fleet_html([], 100.0) == ""
    assert "machine" in dashview.header_html()


def test_executor_lock_is_per_machine_and_local(tmp_path, monkeypatch):
    home = tmp_path / "home"
    assert lock_path(home, shared=False, machine="gpu-01") == home / "executor.lock"
    monkeypatch.setenv("RUNTOOL_LOCK_DIR", str(tmp_path / "local"))
    assert lock_path(home, shared=True, machine="gpu-01") == tmp_path / "local" / "executor-gpu-01.lock"
    assert lock_path(home, shared=True, machine="a/b c").name == "executor-a_b_c.lock"
    monkeypatch.delenv("RUNTOOL_LOCK_DIR")
    assert home not in lock_path(home, shared=True, machine="gpu-01").parents


def test_stale_after_setting(tmp_path):
    home = tmp_path / "home"
    write_config(home, 'stale_after = "90s"\n')
    assert RunQueue(home).settings.stale_after == 90.0
    write_config(home, 'stale_after = "0.5s"\n')
    result = runtool(home, "list")
    assert result.code == 2 and "stale_after: expected a duration from 1s to 1d" in result.err


def test_gone_workers_rows_are_shown_gone_then_removed_after_a_day(tmp_path):
    """Decisions: a worker that went away without leaving (killed) stays in `runtool workers`,
    marked gone, for a day (config.GONE_WORKER_KEPT_S); then `purge` (and the worker's
    hourly pass, cleanup.apply_retention) removes its row."""
    home = tmp_path / "home"
    write_config(home, ROLES)
    q = RunQueue(home, user="alice")
    for name in ("gpu-01:7", "gpu-02:8", "gpu-03:9"):
        q.store.worker_beat(WorkerInfo(name, name.split(":")[0], 4_000_000 + int(name[-1]), [], 0.0, 0.0, None))
    with sqlite3.connect(home / "runtool.db") as db:  # age two rows: killed an hour and two days ago
        db.execute("UPDATE workers SET heartbeat_at = heartbeat_at - 3600 WHERE name = 'gpu-02:8'")
        db.execute("UPDATE workers SET heartbeat_at = heartbeat_at - ? WHERE name = 'gpu-03:9'",
                   (GONE_WORKER_KEPT_S + 3600,))
    assert [(w.name, gone) for w, gone in q.workers()] == [("gpu-01:7", False), ("gpu-02:8", True),
                                                          ("gpu-03:9", True)]
    listing = runtool(home, "workers", user="alice").out
    assert [line.split()[-1] for line in listing.splitlines() if line.startswith("gpu-03")] == ["gone"]
    assert q.purge("1d") == []
    assert [w.name for w, _ in q.workers()] == ["gpu-01:7", "gpu-02:8"]
    with sqlite3.connect(home / "runtool.db") as db:
        db.execute("UPDATE workers SET heartbeat_at = heartbeat_at - ? WHERE name = 'gpu-02:8'",
                   (GONE_WORKER_KEPT_S,))
    apply_retention(q.store, {})  # the worker's hourly pass, no [retention] set
    assert [w.name for w, _ in q.workers()] == ["gpu-01:7"]
    q.close()
