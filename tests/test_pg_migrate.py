"""`runtool migrate-store --to URL`: a team's SQLite home moves onto PostgreSQL with every
run, its history, its parents and the paused queues; ids are kept and never reused."""

from __future__ import annotations

import pytest

from helpers import runtool, write_config
from runtool import RunQueue, Status
from runtool.worker import Worker

pytestmark = pytest.mark.postgres


def records(q: RunQueue) -> list[dict]:
    return [q.get(r.id, history=True).to_dict(with_history=True) for r in q.list(limit=1000)]


@pytest.mark.kernel
def test_a_sqlite_home_moves_with_every_run_and_its_history(pg_server, home, job, monkeypatch):
    q = RunQueue(home)
    ok = q.submit(job, {"n": 1, "label": "é"}, tags={"team": "a"})
    failing = q.submit(job, {"fail": True}, retries=0)
    child = q.submit(job, after=[ok.id, failing.id], on="finish")
    Worker(q).drain()
    later = q.submit(job, delay="1h", queue="detection")
    gone = q.submit(job)
    q.delete(gone.id)
    q.cancel(later.id, reason="not now")
    q.retry(later.id)
    q.pause("detection")
    before = records(q)
    assert {r["status"] for r in before} == {"succeeded", "failed", "waiting"}
    assert q.get(child.id).status is Status.SUCCEEDED
    q.close()

    url = pg_server.new_database()
    result = runtool(home, "migrate-store", "--to", url)
    assert result.code == 0, result.err
    assert "moved 4 run(s)" in result.out and url.split("@")[1] in result.out

    write_config(home, f'[store]\nurl = "{url}"\n')
    moved = RunQueue(home)
    assert records(moved) == before
    assert moved.paused() == {"detection": before[0]["submitted_by"]}
    assert moved.submit(job).id == gone.id + 1  # the deleted run's id is not given again
    # a second move into a database that holds runs is refused, changing nothing
    moved.close()
    write_config(home, "")
    again = runtool(home, "migrate-store", "--to", url)
    assert again.code == 1 and "already holds 5 run(s)" in again.err and len(again.err.splitlines()) == 1


def test_moving_is_refused_while_a_run_is_processing_or_for_non_admins(pg_server, home, job):
    q = RunQueue(home)
    q.submit(job)
    from runtool.models import Claimant

    q.store.claim([], Claimant("w:1", 1, 1.0, "m"))
    result = runtool(home, "migrate-store", "--to", pg_server.new_database())
    assert result.code == 1 and "is processing; stop the workers first" in result.err
    result = runtool(home, "migrate-store", "--to", pg_server.new_database(), user="someone-else")
    assert result.code == 1 and "may not move the runs" in result.err
    q.close()
