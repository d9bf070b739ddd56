"""identity = "database": the server says who acts, and `runtool grant` gives real database
roles what their runtool role needs; the database itself refuses the rest, even raw SQL."""

from __future__ import annotations

import uuid

import psycopg
import pytest

from helpers import runtool, write_config
from runtool import PermissionDenied, RunQueue, Status
from runtool.models import Claimant

pytestmark = pytest.mark.postgres


@pytest.fixture
def team(pg_server, tmp_path):
    """A database made by its owner (the superuser), three login roles, and a home per role."""
    url = pg_server.new_database()
    suffix = uuid.uuid4().hex[:6]
    names = {who: f"{who}_{suffix}" for who in ("alice", "bob", "carol")}
    with pg_server.admin() as conn:
        for name in names.values():
            conn.execute(f"CREATE ROLE {name} LOGIN")
    homes = {}
    dbname = url.rsplit("/", 1)[1]
    for who, name in [("owner", None), *names.items()]:
        home = tmp_path / who
        write_config(home, f'[store]\nurl = "{pg_server.url_for(dbname, name)}"\nidentity = "database"\n')
        homes[who] = home
    return names, homes, url


def raw(url: str, role: str) -> psycopg.Connection:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["user"] = role
    return psycopg.connect(psycopg.conninfo.make_conninfo(**info), autocommit=True)


def test_grant_gives_each_role_its_rights_and_the_database_enforces_them(team, job, monkeypatch):
    names, homes, url = team
    owner = RunQueue(homes["owner"])
    assert owner.role == "admin" and owner.user == "postgres"
    for who, role in (("alice", "admin"), ("bob", "operator"), ("carol", "viewer")):
        result = runtool(homes["owner"], "grant", names[who], role)
        assert result.code == 0, result.err
    monkeypatch.setenv("RUNTOOL_USER", "postgres")  # ignored: the server authenticated the role
    carol, bob, alice = (RunQueue(homes[w], user="postgres") for w in ("carol", "bob", "alice"))
    assert (carol.user, carol.role) == (names["carol"], "viewer")
    assert (bob.user, bob.role) == (names["bob"], "operator")
    assert (alice.user, alice.role) == (names["alice"], "admin")

    waiting = bob.submit(job).id
    assert bob.get(waiting).submitted_by == names["bob"]
    with pytest.raises(PermissionDenied):
        carol.submit(job)
    assert [r.id for r in carol.list()] == [waiting]
    # the viewer's own SQL: reads, but changes nothing
    with raw(url, names["carol"]) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
        for statement in ("UPDATE runs SET status = 'cancelled'", "DELETE FROM runs", "DELETE FROM history",
                          "INSERT INTO paused (queue, at, \"by\") VALUES ('x', 0, 'c')"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    # an operator may not pause, nor end a run another role's worker is executing
    with pytest.raises(PermissionDenied):
        bob.pause()
    theirs = owner.submit(job).id
    claimed = owner.store.claim([], Claimant("w:1", 1, 1.0, "m"))
    assert claimed is not None and claimed.id == waiting  # oldest first; then the owner's run
    assert owner.store.claim([], Claimant("w:2", 1, 1.0, "m2")).id == theirs  # one processing run per machine
    with raw(url, names["bob"]) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO paused (queue, at, \"by\") VALUES ('x', 0, 'b')")
        changed = conn.execute("UPDATE runs SET status = 'cancelled' WHERE status = 'processing'").rowcount
        assert changed == 0
        assert conn.execute("DELETE FROM runs WHERE status = 'processing'").rowcount == 0
    assert owner.get(theirs).status is Status.PROCESSING
    # the admin's role may
    alice.pause("default")
    assert alice.cancel(theirs, force=True).status is Status.CANCELLED
    # only admins grant, and only known roles
    result = runtool(homes["bob"], "grant", names["carol"], "admin")
    assert result.code == 1 and "may not grant database roles" in result.err
    result = runtool(homes["alice"], "grant", "no_such_role_x", "viewer")
    assert result.code == 1 and "no database role 'no_such_role_x'" in result.err
    result = runtool(homes["alice"], "grant", names["carol"], "boss")
    assert result.code == 2 and len(result.err.splitlines()) == 1
    for q in (owner, alice, bob, carol):
        q.close()


@pytest.mark.kernel
def test_an_operator_finishes_the_runs_its_own_worker_claimed(team, job):
    names, homes, url = team
    runtool(homes["owner"], "grant", names["bob"], "operator")
    bob = RunQueue(homes["bob"])
    run = bob.submit(job, {"n": 5})
    result = runtool(homes["bob"], "drain")
    assert result.code == 0, result.err
    assert bob.get(run.id).status is Status.SUCCEEDED
    bob.close()


def test_grant_needs_identity_database(pg_server, home):
    write_config(home, f'[store]\nurl = "{pg_server.new_database()}"\n')
    result = runtool(home, "grant", "someone", "viewer")
    assert result.code == 1 and 'needs identity = "database"' in result.err
