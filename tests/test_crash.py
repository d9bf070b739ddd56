"""Workers that die: SIGKILL mid-run, death between papermill and recording, and signals."""

from __future__ import annotations

import signal
from pathlib import Path

import psutil
import pytest

from helpers import (LONG_BODY, LONG_PARAMETERS, files_of, kernel_started, markers, notebook, runtool, spawn,
                     wait_for, write_config)
from runtool import RunQueue, Status
from runtool.processes import alive

pytestmark = [pytest.mark.slow, pytest.mark.kernel, pytest.mark.both_stores]


@pytest.fixture
def long_nb(tmp_path: Path) -> Path:
    return notebook(tmp_path / "long.ipynb", parameters=LONG_PARAMETERS, body=LONG_BODY)


def test_sigkill_mid_run_frees_lock_and_kernel_then_reconcile_repairs(home, long_nb, job, tmp_path):
    q = RunQueue(home)
    run = q.submit(long_nb, retries=1)
    nxt = q.submit(job)
    worker = spawn(home, "worker")
    started = wait_for(lambda: kernel_started(q, run.id))
    grandchild = int((files_of(q, started) / "grandchild.pid").read_text())
    worker.send_signal(signal.SIGKILL)
    worker.communicate(timeout=30)
    # the runner and its kernel die with the worker; the lock is free at once
    wait_for(lambda: not alive(started.runner_pid, started.runner_ctime), timeout=10)
    wait_for(lambda: not alive(started.kernel_pid, started.kernel_ctime), timeout=10)
    wait_for(q.lock.is_free, timeout=5)  # the kernel releases a dead holder's lock within a tick
    assert psutil.pid_exists(grandchild)  # orphaned: only reconcile can know it is the run's
    result = runtool(home, "reconcile")
    assert result.code == 0
    assert result.out.startswith(f"run {run.id}: processing -> waiting (reconciled: worker ")
    assert "worker died during cell 4 of 5" in result.out and "ended 1 leftover process" in result.out
    wait_for(lambda: not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == "zombie")
    repaired = q.get(run.id, history=True)
    assert (repaired.status, repaired.attempt) == (Status.WAITING, 1)
    assert repaired.error["type"] == "WorkerDied"
    assert runtool(home, "reconcile").out == ""  # idempotent
    assert runtool(home, "drain").code == 0
    assert q.get(nxt.id).status is Status.SUCCEEDED


def test_sigkill_without_retries_left_fails_the_run(home, long_nb):
    q = RunQueue(home)
    run = q.submit(long_nb, retries=0)
    worker = spawn(home, "worker")
    wait_for(lambda: kernel_started(q, run.id))
    worker.send_signal(signal.SIGKILL)
    worker.communicate(timeout=30)
    q.reconcile()
    failed = q.get(run.id, history=True)
    assert failed.status is Status.FAILED
    assert "worker died during cell" in failed.history[-1]["reason"]
    assert (Path(failed.run_dir) / "error.txt").read_text().startswith("WorkerDied: worker died during cell")


def test_death_after_papermill_finished_is_repaired_as_succeeded(home, job):
    q = RunQueue(home)
    run = q.submit(job, {"n": 3})
    result = runtool(home, "drain", env={"RUNTOOL_TEST_CRASH_AT": "executed"})
    assert result.code == -signal.SIGKILL
    assert q.get(run.id).status is Status.PROCESSING
    changes = q.reconcile()
    assert changes == [f"run {run.id}: processing -> succeeded (reconciled: worker "
                       f"{q.get(run.id).worker} gone; output notebook finished without exception)"]
    assert q.get(run.id).status is Status.SUCCEEDED


def test_death_after_papermill_failed_is_repaired_as_failed(home, job):
    q = RunQueue(home)
    run = q.submit(job, {"fail": True}, retries=3)
    runtool(home, "drain", env={"RUNTOOL_TEST_CRASH_AT": "executed"})
    q.reconcile()
    failed = q.get(run.id)
    assert failed.status is Status.FAILED
    assert (failed.error["type"], failed.error["message"]) == ("ValueError", "asked to fail (n=1)")


def test_death_right_after_claim_is_retried(home, job):
    write_config(home, 'retry_base_delay = "0s"\n')
    q = RunQueue(home)
    run = q.submit(job)
    runtool(home, "drain", env={"RUNTOOL_TEST_CRASH_AT": "claimed"})
    q.reconcile()
    again = q.get(run.id)
    assert (again.status, again.attempt) == (Status.WAITING, 1)
    assert "before the output notebook was written" in again.error["message"]
    assert runtool(home, "drain").code == 0
    assert q.get(run.id).status is Status.SUCCEEDED


def test_first_sigterm_finishes_the_run_then_stops(home, long_nb, tmp_path):
    q = RunQueue(home)
    marker = tmp_path / "m.jsonl"
    run = q.submit(long_nb, {"sleep": 2.0, "marker": str(marker)})
    later = q.submit(long_nb, {"sleep": 0.0})
    worker = spawn(home, "worker")
    wait_for(lambda: kernel_started(q, run.id))
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert q.get(run.id).status is Status.SUCCEEDED
    assert q.get(later.id).status is Status.WAITING
    assert [m["run_id"] for m in markers(marker)] == [run.id]


def test_second_sigterm_ends_the_run_and_requeues_it(home, long_nb, tmp_path):
    q = RunQueue(home)
    run = q.submit(long_nb)
    log = tmp_path / "worker.log"
    worker = spawn(home, "worker", log=log)
    started = wait_for(lambda: kernel_started(q, run.id))
    grandchild = int((files_of(q, started) / "grandchild.pid").read_text())
    worker.send_signal(signal.SIGTERM)
    # two signals before the handler runs would count as one: send the second once it has
    wait_for(lambda: "SIGTERM: finishing the current run" in log.read_text(), timeout=30)
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)
    assert worker.returncode == 1
    requeued = q.get(run.id, history=True)
    assert (requeued.status, requeued.attempt) == (Status.WAITING, 0)
    assert requeued.history[-1]["reason"] == "worker stopped by a second signal; attempt not counted"
    for pid, ctime in [(started.runner_pid, started.runner_ctime), (started.kernel_pid, started.kernel_ctime)]:
        assert not alive(pid, ctime)
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == "zombie"
    wait_for(q.lock.is_free, timeout=5)
