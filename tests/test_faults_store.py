"""Fault campaign, the store: a database locked longer than the busy timeout, a full disk,
a read-only disk, and the durability of `submit`. Clear one-line errors, nothing corrupted,
work resumes once the fault clears; `PRAGMA integrity_check` is ok after every case."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest
from fault_checks import (
    integrity,
    lock_free,
    run_python,
    trial_notebook,
    wait_for,
)
from helpers import PYTHON, notebook, runtool, spawn

from runtool import RunQueue, Status
from runtool.queue import SQLiteStore

FAST = {"RUNTOOL_BUSY_TIMEOUT": "1"}


def sh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=120)


def one_line(text: str) -> str:
    assert text.endswith("\n") and text.count("\n") == 1, text
    assert "Traceback" not in text and "internal error" not in text, text
    return text.strip()


def snapshot(home: Path) -> list[tuple]:
    conn = sqlite3.connect(home / "runtool.db")
    try:
        return conn.execute("SELECT id, status, attempt, (SELECT COUNT(*) FROM history h WHERE h.run_id = runs.id)"
                            " FROM runs ORDER BY id").fetchall()
    finally:
        conn.close()


# -- a database held locked by another connection -------------------------------------------


@pytest.fixture
def held(home, job):
    """A home with one waiting run, and another connection holding its write lock."""
    with RunQueue(home) as q:
        q.submit(job)
    conn = sqlite3.connect(home / "runtool.db", isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    yield conn
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    conn.close()


def test_busy_timeout_is_overridable(monkeypatch, home, tmp_path):
    assert SQLiteStore(tmp_path / "x.db", tmp_path).busy_timeout == 60.0
    monkeypatch.setenv("RUNTOOL_BUSY_TIMEOUT", "2.5s")
    assert SQLiteStore(tmp_path / "y.db", tmp_path).busy_timeout == 2.5
    monkeypatch.setenv("RUNTOOL_BUSY_TIMEOUT", "soon")
    result = runtool(home, "list")
    assert (result.code, one_line(result.err)) == (2, "runtool: bad RUNTOOL_BUSY_TIMEOUT 'soon': expected e.g. 90, 90s, 5m, 2h, 1d")


def test_writes_refused_reads_served_while_locked_then_resumed(home, job, held):
    before = snapshot(home)
    db = home / "runtool.db"
    for args in (("submit", str(job)), ("pause",), ("drain",)):
        result = runtool(home, *args, env=FAST)
        assert result.code == 1, (args, result)
        assert one_line(result.err) == f"runtool: database {db}: locked by another connection for more than 1 s"
    assert runtool(home, "list", env=FAST).code == 0  # WAL: readers do not wait for the writer
    assert snapshot(home) == before and lock_free(home)
    held.execute("ROLLBACK")
    assert runtool(home, "submit", str(job), env=FAST).out == "2\n"
    assert integrity(home) == "ok"


def test_exclusive_lock_refuses_even_reads_in_one_line(home, job):
    with RunQueue(home) as q:
        q.submit(job)
    conn = sqlite3.connect(home / "runtool.db", isolation_level=None)
    conn.execute("PRAGMA locking_mode = EXCLUSIVE")
    conn.execute("BEGIN EXCLUSIVE")
    try:
        result = runtool(home, "list", env=FAST)
        assert result.code == 1
        assert "locked by another connection for more than 1 s" in one_line(result.err)
    finally:
        conn.execute("ROLLBACK")
        conn.close()
    assert runtool(home, "list", env=FAST).code == 0
    assert integrity(home) == "ok"


@pytest.mark.kernel
@pytest.mark.slow
def test_worker_rides_out_a_lock_held_during_a_run(home, tmp_path):
    """Held across a run's progress writes and its outcome: the run is not harmed, its
    outcome is recorded once the lock goes, and the worker carries on with the next run."""
    nb = trial_notebook(tmp_path)
    q = RunQueue(home)
    first = q.submit(nb, {"sleep": 2.0, "grandchild": False})
    second = q.submit(nb, {"grandchild": False})
    log = tmp_path / "worker.log"
    worker = spawn(home, "worker", "--poll", "0.2s", env=FAST, log=log)
    try:
        wait_for(lambda: q.get(first.id).kernel_pid, timeout=120)
        conn = sqlite3.connect(home / "runtool.db", isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        # the sleep cell ends, papermill returns, the worker cannot record and says so
        wait_for(lambda: "cannot record the outcome yet: database" in log.read_text(), timeout=120,
                 what="the worker to find the database locked")
        assert worker.poll() is None, log.read_text()
        assert q.get(first.id).status is Status.PROCESSING
        conn.execute("ROLLBACK")
        conn.close()
        wait_for(lambda: q.get(second.id).status is Status.SUCCEEDED, timeout=120)
        done = q.get(first.id, history=True)
        assert (done.status, done.attempt) == (Status.SUCCEEDED, 1)
        assert [h["status"] for h in done.history] == ["waiting", "processing", "succeeded"]
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=120)
    assert worker.returncode == 0, log.read_text()
    assert integrity(home) == "ok"


# -- full and read-only disks ---------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (root only); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    made = sh("mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount))
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    yield mount
    sh("mount", "-o", "remount,rw", str(mount))
    if sh("umount", str(mount)).returncode != 0:
        sh("umount", "-l", str(mount))


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


@pytest.mark.kernel
def test_full_disk_refuses_clearly_and_resumes(small_disk, job):
    home = small_disk / "home"
    assert runtool(home, "submit", str(job)).code == 0
    before = snapshot(home)
    filler = fill(small_disk)
    for args in (("submit", str(job)), ("list",)):
        result = runtool(home, *args)
        if result.code != 0 or args[0] == "submit":  # a read may find room; a write may not
            assert result.code == 1
            assert "no space left" in one_line(result.err), result.err
    filler.unlink()
    assert snapshot(home) == before  # (WAL: even a read needs room for its shared memory)
    assert runtool(home, "submit", str(job)).out == "2\n"
    assert runtool(home, "drain").code == 0
    with RunQueue(home) as q:
        assert [r.status for r in q.list()] == [Status.SUCCEEDED, Status.SUCCEEDED]
    assert integrity(home) == "ok"


@pytest.mark.kernel
@pytest.mark.slow
def test_worker_survives_a_run_that_fills_the_disk(small_disk, tmp_path):
    """The run fills the disk and fails; the worker cannot record that until space is freed,
    then records it and executes the next run."""
    home = small_disk / "home"
    filling = notebook(tmp_path / "fill.ipynb", parameters='run_dir = ""\nsize = 0', body=[
        "import os\nwith open(os.path.join(run_dir, 'big.bin'), 'wb') as f:\n    f.write(b'x' * size)"])
    q = RunQueue(home)
    big = q.submit(filling, {"size": 3_000_000}, retries=0)
    nxt = q.submit(filling, {"size": 10})
    log = tmp_path / "worker.log"
    worker = spawn(home, "worker", "--poll", "0.2s", log=log)
    try:
        wait_for(lambda: (Path(big.run_dir) / "big.bin").exists(), timeout=120)
        wait_for(lambda: "cannot record the outcome yet" in log.read_text(), timeout=120,
                 what="the worker to find the disk full")
        assert worker.poll() is None, log.read_text()
        (Path(big.run_dir) / "big.bin").unlink()
        wait_for(lambda: q.get(nxt.id).status is Status.SUCCEEDED, timeout=120)
        failed = q.get(big.id)
        assert failed.status is Status.FAILED and failed.error["type"] in ("OSError", "RunnerDied"), failed.error
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=120)
        q.close()
    assert worker.returncode == 0, log.read_text()
    assert integrity(home) == "ok"


@pytest.mark.kernel
def test_read_only_disk_refuses_clearly_and_resumes(small_disk, job):
    home = small_disk / "home"
    assert runtool(home, "submit", str(job)).code == 0
    before = snapshot(home)
    assert sh("mount", "-o", "remount,ro", str(small_disk)).returncode == 0
    assert runtool(home, "submit", str(job)).code == 1
    for args in (("submit", str(job)), ("list",), ("drain",), ("reconcile",)):
        result = runtool(home, *args)  # reads may work if SQLite's shared memory is still there
        if result.code != 0 or args[0] in ("submit", "drain"):
            assert result.code == 1, (args, result)
            assert "read-only" in one_line(result.err), (args, result.err)
    assert sh("mount", "-o", "remount,rw", str(small_disk)).returncode == 0
    assert snapshot(home) == before
    assert runtool(home, "drain").out == "runtool drain: executed 1 run(s)\n"
    assert integrity(home) == "ok"


# -- durability of submit -------------------------------------------------------------------

SUBMIT_THEN_DIE = """
import os, signal, sys
from runtool import RunQueue
q = RunQueue(sys.argv[1])
run = q.submit(sys.argv[2], {"n": 42})
print(run.id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint: only what submit made durable
"""


def test_a_submit_that_returned_survives_kill_9(home, job):
    RunQueue(home).close()
    ids = []
    for _ in range(3):
        died = run_python(SUBMIT_THEN_DIE, str(home), str(job))
        assert died.returncode == -signal.SIGKILL
        ids.append(int(died.stdout))
    assert (home / "runtool.db-wal").exists()  # the commits are in the WAL, not checkpointed
    q = RunQueue(home)
    assert [(r.id, r.parameters) for r in q.list()][::-1] == [(i, {"n": 42}) for i in ids]
    assert integrity(home) == "ok"


def test_store_commits_with_synchronous_full_in_wal_mode(home):
    q = RunQueue(home)
    conn = q.store._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_submit_syncs_the_wal_before_it_answers(home, job):
    """strace: the WAL is fdatasync'ed before the run id is written to stdout."""
    if sh("which", "strace").returncode != 0:
        pytest.skip("strace not installed")
    RunQueue(home).close()
    trace = home / "strace.log"
    traced = sh("strace", "-f", "-o", str(trace), "-e", "trace=openat,fsync,fdatasync,write",
                PYTHON, "-m", "runtool", "--home", str(home), "submit", str(job))
    if traced.returncode != 0 and "ptrace" in traced.stderr:
        pytest.skip(f"strace not permitted: {traced.stderr.strip()[:200]}")
    lines = trace.read_text().splitlines()
    wal_fd = next(line.rsplit("= ", 1)[1] for line in lines if "runtool.db-wal" in line and "openat" in line)
    synced = next(i for i, line in enumerate(lines) if f"fdatasync({wal_fd})" in line or f"fsync({wal_fd})" in line)
    answered = next(i for i, line in enumerate(lines) if 'write(1, "1\\n"' in line)
    assert synced < answered
