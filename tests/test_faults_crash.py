"""Fault campaign, crashes: the worker killed with SIGKILL at random moments and at each
crash point, then `reconcile` and a new `drain` (the long version: scripts/fault_soak.py)."""

from __future__ import annotations

import random
import signal

import pytest
from fault_checks import MODES, TRIAL_CONFIG, kill_trial, trial_notebook
from helpers import notebook, runtool, write_config

from runtool import RunQueue, Status

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("mode", MODES)
def test_kill_trial(tmp_path, mode):
    """One trial per way of dying; the soak runs the same trial 50+ times at random."""
    trial = kill_trial(tmp_path, mode, random.Random(f"suite-{mode}"), runs=2)
    assert trial.killed, trial
    assert trial.problems == [], trial


def test_reconcile_ignores_the_output_of_an_earlier_attempt(home, tmp_path):
    """A worker that dies right after claiming a retried run leaves the previous attempt's
    output.ipynb in the run folder; that is no evidence about the attempt that died."""
    write_config(home, TRIAL_CONFIG)
    nb = trial_notebook(tmp_path)
    q = RunQueue(home)
    run = q.submit(nb, {"fail": True, "grandchild": False}, retries=2)
    assert runtool(home, "drain", "--max-runs", "1").code == 0  # attempt 1 fails: waiting
    assert q.get(run.id).status is Status.WAITING
    result = runtool(home, "drain", env={"RUNTOOL_TEST_CRASH_AT": "claimed"})
    assert result.code == -signal.SIGKILL
    q.reconcile()
    repaired = q.get(run.id)
    # attempt 2 never ran a cell: it failed as WorkerDied and attempt 3 is still to come
    assert (repaired.status, repaired.attempt) == (Status.WAITING, 2)
    assert repaired.error["type"] == "WorkerDied"


def test_reconcile_never_calls_an_attempt_that_did_not_run_succeeded(home, job):
    """Finished notebook, worker killed before recording, run force-cancelled, then retried:
    a worker dying right after claiming the retry must not turn it into `succeeded`."""
    q = RunQueue(home)
    run = q.submit(job)
    assert runtool(home, "drain", env={"RUNTOOL_TEST_CRASH_AT": "executed"}).code == -signal.SIGKILL
    q.cancel(run.id, force=True)  # the owner is admin
    q.retry(run.id)
    assert runtool(home, "drain", env={"RUNTOOL_TEST_CRASH_AT": "claimed"}).code == -signal.SIGKILL
    q.reconcile()
    repaired = q.get(run.id, history=True)
    assert repaired.status is Status.WAITING, repaired.history[-1]
    assert repaired.error["type"] == "WorkerDied"


@pytest.mark.parametrize("fail", [False, True])
def test_kill_right_after_the_outcome_is_recorded_leaves_its_files(home, tmp_path, fail):
    """error.txt (failure) and the OUTPUT copy are written before the outcome is committed,
    so a worker killed right after the commit leaves a complete run behind."""
    nb = notebook(tmp_path / "job.ipynb")
    copy = tmp_path / "copy.ipynb"
    q = RunQueue(home)
    run = q.submit(nb, {"fail": fail}, retries=0, output=copy)
    result = runtool(home, "drain", env={"RUNTOOL_TEST_CRASH_AT": "recorded"})
    assert result.code == -signal.SIGKILL
    done = q.get(run.id)
    assert done.status is (Status.FAILED if fail else Status.SUCCEEDED)
    assert copy.is_file()
    assert (tmp_path / "home" / "runs" / str(run.id) / "error.txt").is_file() is fail
