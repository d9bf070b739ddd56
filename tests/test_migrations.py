"""Schema migrations: a home made by runtool 0.1.0 (schema 1) opens with this code, every
run, parameter, tag, time and history row intact; a newer database is refused."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from helpers import notebook, runtool

from runtool import RunQueue, Status, StoreUnavailable
from runtool.sqlite_schema import SCHEMA_VERSION

FIXTURE = Path(__file__).parent / "fixtures" / "v1-home"


@pytest.fixture
def old_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(FIXTURE / "runtool.db", home / "runtool.db")
    return home


def _schema(db: Path) -> tuple[dict, dict]:
    """Tables' columns (name, type, not null, primary key), and indexes' and triggers' SQL."""
    conn = sqlite3.connect(db)
    tables = {
        name: [row[1:4] + row[5:6] for row in conn.execute(f"PRAGMA table_info({name})")]
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    derived = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type IN ('index', 'trigger')"
                                " AND sql IS NOT NULL"))
    conn.close()
    return tables, derived


def test_a_v1_home_opens_with_every_record_and_history_row_intact(old_home: Path) -> None:
    expected = json.loads((FIXTURE / "records.json").read_text())
    with RunQueue(old_home) as q:
        for record in expected:
            got = q.get(record["id"], history=True).to_dict(with_history=True)
            old_after = record.pop("after")
            assert got.pop("after") == ([old_after] if old_after is not None else [])
            assert (got.pop("machine"), got.pop("metrics")) == (None, {})
            for moved in ("run_dir", "output_path"):  # the home moved; the record follows it
                assert got.pop(moved).startswith(str(old_home / "runs" / str(record["id"])))
                record.pop(moved)
            assert got == record
        assert q.paused() == {"detection": "root"}
        assert [r.id for r in q.list(text="digits")] == [1]  # old runs are in the text index
        assert q.counts()["succeeded"] == 1 and q.count(status="waiting") == 5
        assert q.get(8).label(q.store.now()) == "awaiting"
    conn = sqlite3.connect(old_home / "runtool.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_the_migrated_schema_is_the_schema_of_a_new_home(old_home: Path, tmp_path: Path) -> None:
    RunQueue(old_home).close()
    RunQueue(tmp_path / "new").close()
    assert _schema(old_home / "runtool.db") == _schema(tmp_path / "new" / "runtool.db")


def test_a_migrated_home_works_on_new_ids_and_continuations(old_home: Path, tmp_path: Path) -> None:
    nb = tmp_path / "job.ipynb"
    notebook(nb)
    with RunQueue(old_home) as q:
        new = q.submit(nb)
        assert new.id == 9  # continues the ids, never reuses one
        q.cancel(7)  # the awaiting run 8 continues 7 on finish: cancelled parent -> cancelled
        assert q.get(8).status is Status.CANCELLED
        child = q.submit(nb, after=[1, 2], on="finish")
        assert child.after == [1, 2] and child.ready
        q.delete(new.id)
        assert q.submit(nb).id == child.id + 1


def test_a_database_newer_than_the_code_is_refused_with_one_line(old_home: Path) -> None:
    conn = sqlite3.connect(old_home / "runtool.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    before = (old_home / "runtool.db").read_bytes()
    result = runtool(old_home, "list")
    assert result.code == 1 and result.out == ""
    assert result.err.strip().count("\n") == 0
    assert f"schema version {SCHEMA_VERSION + 1} is newer than this runtool" in result.err
    assert (old_home / "runtool.db").read_bytes() == before


def test_a_migration_that_fails_halfway_changes_nothing(old_home: Path) -> None:
    conn = sqlite3.connect(old_home / "runtool.db")
    conn.execute("CREATE TABLE run_parents (x)")  # in the way of the step that creates it
    conn.commit()
    conn.close()
    with pytest.raises(StoreUnavailable, match="table run_parents already exists"):
        RunQueue(old_home)
    conn = sqlite3.connect(old_home / "runtool.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    columns = [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
    assert "after_id" in columns and "machine" not in columns
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 8
    assert conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'index'").fetchone()[0] >= 6
