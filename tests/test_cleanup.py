"""Cancel, forced cancel, delete, purge, pause and permissions (issue 4), on real runs."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from helpers import (LONG_BODY, LONG_PARAMETERS, ROLES, files_of, kernel_started, notebook, runtool, spawn, wait_for,
                     write_config)
from runtool import IllegalTransition, PermissionDenied, RunQueue, Status
from runtool.cleanup import apply_retention
from runtool.processes import alive
from runtool.worker import Worker

pytestmark = pytest.mark.both_stores


@pytest.fixture
def homes(home: Path, job: Path):
    """A home with roles and one run in each status but processing."""
    write_config(home, ROLES)
    admin = RunQueue(home, user="alice")
    waiting = admin.submit(job)
    done = admin.submit(job)
    failed = admin.submit(job, {"fail": True}, retries=0)
    cancelled = admin.submit(job)
    admin.cancel(cancelled.id)
    Worker(admin).drain()
    later = admin.submit(job)  # after the drain, so still waiting
    return admin, {"succeeded": done.id, "failed": failed.id, "cancelled": cancelled.id,
                   "waiting": later.id, "first": waiting.id}


def snapshot(q: RunQueue) -> list[tuple]:
    return [(r.id, r.status, r.attempt, len(q.get(r.id, history=True).history)) for r in q.list(limit=100)]


def test_viewer_may_only_look(home, homes):
    admin, ids = homes
    before = snapshot(admin)
    carol = RunQueue(home, user="carol")
    for action in (lambda: carol.cancel(ids["waiting"]), lambda: carol.delete(ids["succeeded"]),
                   lambda: carol.retry(ids["failed"]), lambda: carol.pause(), lambda: carol.purge("0s"),
                   lambda: carol.submit(Path(admin.get(ids["waiting"]).notebook))):
        with pytest.raises(PermissionDenied):
            action()
    assert snapshot(admin) == before
    result = runtool(home, "cancel", str(ids["waiting"]), user="carol")
    assert result.code == 1
    assert result.err == "runtool: user 'carol' (role viewer) may not cancel runs: missing permission 'cancel'\n"
    assert runtool(home, "list", user="carol").code == 0
    assert runtool(home, "show", str(ids["failed"]), user="nobody").code == 0  # "*" = viewer
    assert snapshot(admin) == before


def test_operator_cancels_deletes_and_retries_where_status_allows(home, homes):
    admin, ids = homes
    bob = RunQueue(home, user="bob")
    assert bob.cancel(ids["waiting"], reason="not needed").status is Status.CANCELLED
    assert bob.get(ids["waiting"], history=True).history[-1]["reason"] == "cancelled by bob: not needed"
    for status in ("succeeded", "failed"):
        with pytest.raises(IllegalTransition, match=f"cannot cancel: it already {status}"):
            bob.cancel(ids[status])
    assert bob.retry(ids["failed"]).status is Status.WAITING
    with pytest.raises(IllegalTransition, match="cannot retry: not allowed while succeeded"):
        bob.retry(ids["succeeded"])
    for name in ("succeeded", "cancelled", "first"):
        folder = Path(bob.get(ids[name]).run_dir)
        bob.delete(ids[name])
        assert not folder.exists()
    assert {r.id for r in bob.list()} == {ids["failed"], ids["waiting"]}
    with pytest.raises(PermissionDenied, match="missing permission 'pause'"):
        bob.pause("default")
    with pytest.raises(PermissionDenied, match="missing permission 'purge'"):
        bob.purge("1d")


def test_custom_role_deletes_only_its_kind(home, homes, tmp_path):
    admin, ids = homes
    other = notebook(tmp_path / "other.ipynb")
    foreign = admin.submit(other)
    dora = RunQueue(home, user="dora")
    with pytest.raises(PermissionDenied, match="may not delete runs of kind other: missing permission 'delete'"):
        dora.delete(foreign.id)
    dora.delete(ids["succeeded"])
    with pytest.raises(PermissionDenied, match="missing permission 'cancel'"):
        dora.cancel(ids["waiting"])
    assert dora.submit(other).status is Status.WAITING
    assert admin.get(foreign.id).status is Status.WAITING


@pytest.mark.kernel
def test_processing_run_cannot_be_cancelled_or_deleted_and_force_cancel_is_admin_only(home, tmp_path, no_leftovers):
    write_config(home, ROLES)
    long_nb = notebook(tmp_path / "long.ipynb", parameters=LONG_PARAMETERS, body=LONG_BODY)
    admin = RunQueue(home, user="alice")
    run = admin.submit(long_nb, retries=0)
    worker = spawn(home, "worker")
    try:
        started = wait_for(lambda: kernel_started(admin, run.id))
        grandchild = int((files_of(admin, started) / "grandchild.pid").read_text())
        for user in ("bob", "alice"):
            result = runtool(home, "cancel", str(run.id), user=user)
            assert result.code == 1
            assert "cannot cancel: it is processing (an admin may end it with --force)" in result.err
            result = runtool(home, "delete", str(run.id), user=user)
            assert (result.code, result.err) == (1, f"runtool: run {run.id}: cannot delete: it is processing\n")
        result = runtool(home, "cancel", str(run.id), "--force", user="bob")
        assert result.code == 1 and "missing permission 'force-cancel'" in result.err
        assert admin.get(run.id).status is Status.PROCESSING
        assert Path(started.run_dir).is_dir()
        began = time.monotonic()
        result = runtool(home, "cancel", str(run.id), "--force", "--reason", "stuck", user="alice")
        took = time.monotonic() - began
        assert (result.code, result.out) == (0, f"run {run.id}: cancelled\n")
        assert took < 10
        # every process of the run is gone when the command returns
        assert not alive(started.runner_pid, started.runner_ctime)
        assert not alive(started.kernel_pid, started.kernel_ctime)
        assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == "zombie"
        cancelled = admin.get(run.id, history=True)
        assert cancelled.status is Status.CANCELLED
        assert cancelled.history[-1]["by"] == "alice"
        assert cancelled.history[-1]["reason"] == "force-cancelled by alice: stuck"
        # the worker carries on and records nothing over the cancel
        nxt = admin.submit(long_nb, {"sleep": 0.0})
        wait_for(lambda: admin.get(nxt.id).status is Status.SUCCEEDED)
        assert admin.get(run.id).status is Status.CANCELLED
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=60)


@pytest.mark.kernel
def test_delete_never_leaves_the_run_folder(home, job, tmp_path):
    q = RunQueue(home)
    run = q.submit(job)
    Worker(q).drain()
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "data.txt").write_text("keep me")
    folder = Path(q.get(run.id).run_dir)
    os.symlink(outside, folder / "link-to-dir")
    os.symlink(outside / "data.txt", folder / "link-to-file")
    sibling = q.submit(job)
    Worker(q).drain()
    q.delete(run.id)
    assert not folder.exists()
    assert (outside / "data.txt").read_text() == "keep me"
    assert Path(q.get(sibling.id).run_dir).is_dir()
    # a run folder that is itself a symlink: the link goes, its target stays
    linked = q.submit(job)
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "x").write_text("x")
    os.symlink(target, q.runs_dir / str(linked.id))
    q.delete(linked.id)
    assert not (q.runs_dir / str(linked.id)).exists() and (target / "x").exists()


def test_purge_removes_only_old_finished_runs(home, homes):
    admin, ids = homes
    assert admin.purge("1h") == []
    finished = max(admin.get(ids[name]).finished_at for name in ("first", "succeeded", "failed", "cancelled"))
    wait_for(lambda: time.time() - finished > 0.1, timeout=5, every=0.01, what="runs older than 0.1 s")
    removed = admin.purge("0.1s")
    assert sorted(removed) == sorted([ids["first"], ids["succeeded"], ids["failed"], ids["cancelled"]])
    assert {r.status for r in admin.list()} == {Status.WAITING}
    assert not Path(admin.runs_dir / str(ids["succeeded"])).exists()
    result = runtool(home, "purge", "--older-than", "0s", user="alice")
    assert result.out == "purged 0 run(s)\n"
    assert runtool(home, "purge", "--older-than", "soon", user="alice").code == 2


@pytest.mark.kernel
def test_retention_from_config(home, job):
    write_config(home, '[retention]\nsucceeded = "0s"\n')
    q = RunQueue(home)
    ok = q.submit(job)
    bad = q.submit(job, {"fail": True}, retries=0)
    Worker(q).drain()
    assert apply_retention(q.store, q.settings.retention) == [ok.id]
    assert [r.id for r in q.list()] == [bad.id]
    write_config(home, '[retention]\nrunning = "1d"\n')
    assert "retention.running: expected succeeded, failed or cancelled" in runtool(home, "list").err


@pytest.mark.kernel
def test_pause_and_resume_from_the_command_line(home, job):
    write_config(home, ROLES)
    RunQueue(home, user="alice").submit(job, queue="detection")
    assert runtool(home, "pause", "detection", user="bob").code == 1
    assert runtool(home, "pause", "detection", user="alice").out == "paused queue detection\n"
    assert "waiting (paused)" in runtool(home, "list").out
    assert runtool(home, "drain").out == "runtool drain: executed 0 run(s)\n"
    assert runtool(home, "pause", "Bad!", user="alice").code == 2
    assert runtool(home, "resume", user="alice").out == "resumed every queue\n"
    assert runtool(home, "drain").out == "runtool drain: executed 1 run(s)\n"


@pytest.mark.kernel
def test_reconcile_leaves_a_live_run_alone(home, tmp_path):
    long_nb = notebook(tmp_path / "long.ipynb", parameters=LONG_PARAMETERS, body=LONG_BODY)
    q = RunQueue(home)
    run = q.submit(long_nb, {"sleep": 5.0})
    worker = spawn(home, "worker")
    try:
        wait_for(lambda: kernel_started(q, run.id))
        assert runtool(home, "reconcile").out == ""
        assert runtool(home, "reconcile", "--json").out == "[]\n"
        assert q.get(run.id).status is Status.PROCESSING
        wait_for(lambda: q.get(run.id).status is Status.SUCCEEDED, timeout=60)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=60)
