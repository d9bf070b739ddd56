"""The PostgreSQL store's own behaviour: selection, schema, the record, wake-up, and faults
(connection killed, server restarted, server unreachable), on a real server."""

from __future__ import annotations

import json
import re
import signal
import subprocess

import psycopg
import pytest

import pg
from helpers import PYTHON, runtool, spawn, wait_for, write_config
from runtool import RunQueue, Status, pg_schema
from runtool.errors import ConfigError, StoreUnavailable

pytestmark = pytest.mark.postgres

SLEEPY = {"sleep": 4.0}


@pytest.fixture
def url(pg_server, monkeypatch) -> str:
    url = pg_server.new_database()
    monkeypatch.setenv("RUNTOOL_DATABASE_URL", url)
    return url


def comparable(run) -> dict:
    """The record without what differs between two stores by nature (times, paths, id)."""
    record = run.to_dict(with_history=True)
    for key in ("created_at", "started_at", "finished_at", "heartbeat_at", "run_dir", "output_path",
                "worker", "not_before"):
        record.pop(key)
    record["history"] = [{"status": h["status"], "error": h["error"], "reason": re.sub(r"[\d.]+ s", "N s", h["reason"])}
                         for h in record["history"]]
    return record


def test_store_url_in_runtool_toml_selects_postgres(pg_server, home, job):
    url = pg_server.new_database()
    write_config(home, f'[store]\nurl = "{url}"\n')
    run = RunQueue(home).submit(job, {"n": 2})
    assert not (home / "runtool.db").exists()
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT parameters FROM runs WHERE id = %s", (run.id,)).fetchone()[0] == '{"n": 2}'


@pytest.mark.parametrize("store, message", [
    ('url = "sqlite:///x"', "store.url: expected a PostgreSQL URL"),
    ('url = "postgresql://bob:sekrit@db/runs"', "store.url: holds a password"),
    ('colour = "red"', "store.colour: unknown setting"),
    ('identity = "ldap"', "store.identity: expected"),
    ('identity = "database"', "store.identity: \"database\" needs a PostgreSQL store"),
])
def test_bad_store_table_names_file_and_key(home, job, store, message):
    write_config(home, f"[store]\n{store}\n")
    with pytest.raises(ConfigError, match=message) as caught:
        RunQueue(home)
    assert "sekrit" not in str(caught.value)
    result = runtool(home, "list")
    assert result.code == 2 and message in result.err and len(result.err.splitlines()) == 1


@pytest.mark.kernel
def test_the_record_is_the_same_on_both_stores(home, tmp_path, job, url, monkeypatch):
    records = []
    for kind in ("postgres", "sqlite"):
        if kind == "sqlite":
            monkeypatch.delenv("RUNTOOL_DATABASE_URL")
        q = RunQueue(tmp_path / kind)
        first = q.submit(job, {"n": 3, "label": "Abü", "x": 1}, queue="q1", priority="high",
                         tags={"b": "2", "a": "1"}, retries=0)
        child = q.submit(job, {"fail": True}, after=[first.id], on="finish", kind="k2", retries=0)
        assert q.count(text="aBü") == 1  # the text filter ignores ASCII case on both
        from runtool.worker import Worker
        Worker(q).drain()
        records.append([comparable(q.get(r.id, history=True)) for r in (first, child)])
        q.close()
    assert records[0] == records[1]
    assert records[0][1]["status"] == "failed" and records[0][1]["after"] == [1]


def test_newer_schema_is_refused_with_one_line(home, url):
    RunQueue(home).close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE runtool_schema SET version = 99")
    with pytest.raises(StoreUnavailable, match="schema version 99 is newer than this runtool"):
        RunQueue(home)
    result = runtool(home, "list")
    assert result.code == 1 and len(result.err.splitlines()) == 1 and "upgrade runtool" in result.err


def test_several_first_opens_at_once_make_the_schema_once(home, url):
    code = "import sys; from runtool import RunQueue; print(RunQueue(sys.argv[1]).count())"
    procs = [subprocess.Popen([PYTHON, "-c", code, str(home)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(6)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    assert [out.strip() for out, _ in outputs] == ["0"] * 6
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version FROM runtool_schema").fetchall() == [(pg_schema.SCHEMA_VERSION,)]


@pytest.mark.parametrize("what", ["unreachable", "missing database", "missing role"])
def test_unreachable_server_or_bad_database_is_one_line_and_writes_nothing(pg_server, home, job, what):
    if what == "unreachable":
        bad = f"postgresql://postgres:sekrit@127.0.0.1:{pg.free_port()}/runs"
    elif what == "missing database":
        bad = pg_server.url_for("no_such_db")
    else:
        bad = pg_server.url_for("postgres", user="no_such_role")
    env = {"RUNTOOL_DATABASE_URL": bad}
    for args in (["submit", str(job)], ["list"], ["worker", "--max-runs", "1"]):
        result = runtool(home, *args, env=env, timeout=60)
        assert result.code == 1, (args, result)
        assert len(result.err.splitlines()) == 1 and result.err.startswith("runtool: database postgresql://")
        assert "sekrit" not in result.err and "Traceback" not in result.err
    assert not (home / "runtool.db").exists()
    assert "no_such" in result.err or "refused" in result.err


def worker_backends(url: str, worker_pid: int) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name LIKE %s",
                            (f"runtool {worker_pid}%",)).fetchall()
    return [r[0] for r in rows]


def assert_recorded_once(q: RunQueue, run_id: int) -> None:
    run = q.get(run_id, history=True)
    assert run.status is Status.SUCCEEDED and run.attempt == 1, run.history
    assert [h["status"] for h in run.history] == ["waiting", "processing", "succeeded"]


@pytest.mark.kernel
@pytest.mark.slow
@pytest.mark.parametrize("fault", ["terminate", "restart"])
def test_connection_lost_mid_run_the_run_finishes_recorded_once_and_the_worker_goes_on(
        pg_server, home, job, url, fault, no_leftovers):
    if fault == "restart" and pg_server.data is None:
        pytest.skip("restarts only a server the tests started")
    q = RunQueue(home)
    worker = spawn(home, "worker", "--poll", "1h")  # only a notification can wake it in time
    try:
        first = q.submit(job, SLEEPY)
        wait_for(lambda: q.get(first.id).status is Status.PROCESSING, what="the run to start")
        wait_for(lambda: worker_backends(url, worker.pid), what="the worker's connections")
        if fault == "terminate":
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE %s",
                             (f"runtool {worker.pid}%",))
        else:
            pg_server.restart()
        wait_for(lambda: q.get(first.id).status is Status.SUCCEEDED, timeout=120, what="the run to be recorded")
        assert_recorded_once(q, first.id)
        # reconnected and listening again: a new submission wakes it although poll is 1 h
        second = q.submit(job, {"n": 2})
        wait_for(lambda: q.get(second.id).status is Status.SUCCEEDED, timeout=120, what="the next run")
        assert_recorded_once(q, second.id)
    finally:
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, err
    q.close()


@pytest.mark.kernel
def test_an_idle_worker_is_woken_by_a_submission(home, job, url):
    q = RunQueue(home)
    worker = spawn(home, "worker", "--poll", "1h")
    try:
        wait_for(lambda: len(worker_backends(url, worker.pid)) == 2, what="the worker listening")
        runs = [q.submit(job, {"n": n}) for n in range(3)]
        for run in runs:
            wait_for(lambda run=run: q.get(run.id).status is Status.SUCCEEDED, timeout=120, what="the runs")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=120)
    assert worker.returncode == 0


def test_bad_input_is_refused_as_on_sqlite(home, job, url):
    q = RunQueue(home)
    run = q.submit(job, {"label": "a\x00b"})  # JSON keeps it escaped
    assert q.get(run.id).parameters["label"] == "a\x00b"
    cancelled = q.cancel(run.id, reason="why\x00not")  # history text cannot hold NUL: kept visible
    assert cancelled.status is Status.CANCELLED
    assert q.list(text="\x00") == []
    result = runtool(home, "show", "99999999999999999999")
    assert result.code == 2 and len(result.err.splitlines()) == 1
    result = runtool(home, "list", "--limit", "-1")
    assert result.code == 2
    result = runtool(home, "show", "1", "--json")
    assert json.loads(result.out)["history"][-1]["reason"].endswith("why\\x00not")
